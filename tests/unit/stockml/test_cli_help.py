"""Every CLI command documents itself."""

import pytest
from typer.testing import CliRunner

from stockml.cli import app

COMMANDS = [
    "demo-data", "validate", "run", "train", "promote", "rollback", "models", "status", "serve", "show", "prune",
    "related", "settings", "monitor",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_top_level_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
