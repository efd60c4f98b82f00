"""A pytest plugin for CI: with ``CI=true`` a skip is a failure, and every run ends with the tests per layer.

CI must not go green on what it did not run: a test that would skip because a service, Java or the
shared data is missing fails instead, with the skip's reason. Loaded by ``tests/conftest.py``
(``pytest_plugins``); tested in ``tests/unit/test_ci_guard.py`` with pytester.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


LAYERS = ("unit", "integration", "system", "infra")


def _layer(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in LAYERS else "other"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``CI=true`` a test that skips (a service, Java or shared data missing) fails instead: CI must
    not go green on what it did not run. ``xfail`` is not a skip and is left alone."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module that skips while it is collected (``pytest.importorskip`` at the top)."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI (CI=true), which counts as a failure: {reason}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Tests per layer (tests/unit, tests/integration, tests/system, tests/infra) and by outcome, then the skips."""
    stats = terminalreporter.stats
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        seen: set[str] = set()
        for rep in stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            if not nodeid or (outcome != "error" and getattr(rep, "when", "call") not in {"call", "setup"}):
                continue
            if (nodeid, outcome) in seen:
                continue
            seen.add((nodeid, outcome))
            row = counts.setdefault(_layer(nodeid), {})
            row[outcome] = row.get(outcome, 0) + 1
    if not counts:
        return
    terminalreporter.section("tests per layer")
    for layer in (*LAYERS, "other"):
        if layer in counts:
            row = counts[layer]
            parts = ", ".join(f"{row.get(k, 0)} {k}" for k in ("passed", "failed", "skipped", "error"))
            terminalreporter.write_line(f"{layer:<12} {sum(row.values()):>4} tests: {parts}")
    skipped = sum(r.get("skipped", 0) for r in counts.values())
    terminalreporter.write_line(f"skipped in all: {skipped}" + (" (CI=true: skips fail)" if in_ci() else ""))
