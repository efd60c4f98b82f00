"""The settings object is the one reference: README's table is generated from it and must match."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from stockml.cli import app
from stockml.settings import TABLE_END, TABLE_START, Settings, settings_rows, settings_table

README = Path(__file__).resolve().parents[3] / "README.md"


def _readme_block() -> str:
    text = README.read_text()
    assert text.count(TABLE_START) == 1 and text.count(TABLE_END) == 1
    return text[text.index(TABLE_START) + len(TABLE_START) : text.index(TABLE_END)].strip("\n") + "\n"


def test_readme_settings_table_is_the_generated_one():
    assert _readme_block() == settings_table(), (
        "README's settings table is out of date: replace the block between the settings-table markers "
        "with the output of `stockml settings --markdown`"
    )


def test_every_setting_is_in_the_table_with_a_description():
    rows = {env: (type_, default, desc) for env, type_, default, desc in settings_rows()}
    for name, info in Settings.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            assert any(env.startswith(f"STOCKML_{name.upper()}__") for env in rows), name
            continue
        assert f"STOCKML_{name.upper()}" in rows, name
        assert info.description, f"{name} has no description"
    assert rows["STOCKML_HORIZON"] == ("int", "13", "Forecast horizon in weeks.")
    assert rows["STOCKML_SOURCE_SCHEMA"][:2] == ("str | None", "")
    assert rows["STOCKML_DEBUG"][1] == "false"


def test_nested_sections_are_walked_recursively():
    class Inner(BaseModel):
        depth: int = Field(default=2, description="Innermost knob.")

    class Section(BaseModel):
        poll_s: float = Field(default=5.0, description="Seconds | between polls.")
        inner: Inner = Field(default_factory=Inner, description="A sub-section.")

    class Demo(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="STOCKML_", env_nested_delimiter="__")
        top: str = Field(default="x", description="A top-level knob.")
        serving: Section = Field(default_factory=Section, description="Serving knobs.")

    rows = settings_rows(Demo)
    assert rows == [
        ("STOCKML_TOP", "str", "x", "A top-level knob."),
        ("STOCKML_SERVING__POLL_S", "float", "5.0", "Seconds | between polls."),
        ("STOCKML_SERVING__INNER__DEPTH", "int", "2", "Innermost knob."),
    ]

    class Undocumented(BaseModel):
        knob: int = 1

    with pytest.raises(ValueError, match="no description"):
        settings_rows(Undocumented, "STOCKML_")


def test_cli_prints_the_same_table():
    result = CliRunner().invoke(app, ["settings", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.output == settings_table()
    plain = CliRunner().invoke(app, ["settings"])
    assert plain.exit_code == 0 and "STOCKML_HOME" in plain.output


def test_cli_knobs_come_from_the_settings(monkeypatch):
    monkeypatch.setenv("STOCKML_DEBUG", "1")
    monkeypatch.setenv("STOCKML_LOG_LEVEL", "INFO")
    monkeypatch.setenv("STOCKML_GIT_COMMIT", "abc123")
    monkeypatch.setenv("STOCKML_ACTOR", "ci-bot")
    s = Settings()
    assert (s.debug, s.log_level, s.git_commit, s.actor) == (True, "INFO", "abc123", "ci-bot")
    from stockml.steps.registry import provenance_tags

    assert provenance_tags(s) == {"git_commit": "abc123", "trained_by": "ci-bot"}
    monkeypatch.setenv("STOCKML_LOG_LEVEL", "LOUD")
    with pytest.raises(ValueError):
        Settings()
