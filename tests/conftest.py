"""Hermetic test environment: Airflow and stockml state live in a temporary folder."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Test helpers (service starters, clients, fixtures) live in tests/support/; tests are grouped by
# layer: tests/unit/<package>/, tests/integration/ (real Postgres, MLflow, Airflow dag.test, the CLI),
# tests/system/ (real servers: bentoml serve, Spark's Thrift server, a Celery Airflow stack).
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

_HOME = Path(tempfile.mkdtemp(prefix="stockml-tests-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
_REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_REPO / "plugins")
os.environ.setdefault("STOCKML_HOME", str(_HOME / "stockml"))

import pytest  # noqa: E402

ROUTER_METHODS = ["Naive2", "SES", "Theta", "TSB", "CrostonSBA", "ADIDA"]


@pytest.fixture(scope="session")
def router_data():
    """A small demo catalogue with a 3-window backtest of six fast methods (shared by router tests)."""
    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting.backtest import backtest
    from training.forecasting.zoo import ModelZoo

    cat = generate_catalogue(80, 120, seed=7, dirty_rows=False)
    demand = to_weekly_demand(cat.movements)
    bt = backtest(demand, ModelZoo(methods=ROUTER_METHODS, n_jobs=1), h=8, n_windows=3)
    return {"demand": demand, "products": cat.products, "backtest": bt}


@pytest.fixture(scope="session")
def airflow_db():
    """`airflow db migrate` once for the session (dag.test needs the metadata tables)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def dagbag():
    """The repository's DAGs, parsed the way the DAG processor parses them."""
    from airflow.models import DagBag

    return DagBag(dag_folder=str(_REPO / "dags"))


# ------------------------------------------------------------------ CI: a skip is a failure, counts per layer

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
LAYERS = ("unit", "integration", "system")


def _layer(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in LAYERS else "other"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``CI=true`` a test that skips (a service, Java or shared data missing) fails instead: CI must
    not go green on what it did not run. ``xfail`` is not a skip and is left alone."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module that skips while it is collected (``pytest.importorskip`` at the top)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI (CI=true), which counts as a failure: {reason}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Tests per layer (tests/unit, tests/integration, tests/system) and by outcome, then the skips."""
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
    terminalreporter.write_line(f"skipped in all: {skipped}" + (" (CI=true: skips fail)" if IN_CI else ""))
