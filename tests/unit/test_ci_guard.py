"""The CI guard (tests/support/ci_guard.py) run by a pytest inside the test: with ``CI=true`` a skip
fails, naming its reason, and the summary counts the tests per layer; without it a skip stays a skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[1] / "support"

pytest_plugins = ["pytester"]

INNER = """
import pytest

def test_needs_a_service():
    pytest.skip("no service X on 127.0.0.1")

def test_fine():
    assert True
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]))
    (pytester.path / "tests" / "unit").mkdir(parents=True)
    (pytester.path / "tests" / "unit" / "test_inner.py").write_text(INNER)
    return pytester.runpytest_subprocess("-p", "ci_guard", "tests")


def test_ci_turns_a_skip_into_a_failure(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "true")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true)*no service X*", "unit*2 tests: 1 passed, 1 failed*"])


def test_outside_ci_a_skip_stays_a_skip(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["unit*2 tests: 1 passed, 0 failed, 1 skipped*", "skipped in all: 1"])


def test_the_infra_layer_is_counted_apart(pytester, monkeypatch):
    (pytester.path / "tests" / "infra").mkdir(parents=True)
    (pytester.path / "tests" / "infra" / "test_tf.py").write_text("def test_tf():\n    assert True\n")
    result = _run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["unit*2 tests: 1 passed, 0 failed, 1 skipped*", "infra*1 tests: 1 passed*"])
