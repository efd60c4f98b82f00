"""Hermetic test environment: Airflow and stockml state live in a temporary folder."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Test helpers (service starters, clients, fixtures) live in tests/support/; tests are grouped by
# layer: tests/unit/<package>/, tests/integration/ (real Postgres, MLflow, Airflow dag.test, the CLI),
# tests/system/ (real servers: bentoml serve, Spark's Thrift server, a Celery Airflow stack), tests/infra/ (the
# Terraform in infra/terraform: fmt, parsing, wiring, checkov, the Kubernetes manifests against their schemas).
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

_HOME = Path(tempfile.mkdtemp(prefix="stockml-tests-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
_REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_REPO / "plugins")
os.environ.setdefault("STOCKML_HOME", str(_HOME / "stockml"))
# Every pipeline run recommends orders; a short PPO training keeps the many pipeline runs of the suite
# fast (the orders tests and bench.rl_* measure the agent at full budget).
os.environ.setdefault("STOCKML_RL_TRAIN_STEPS", "1024")
os.environ.setdefault("STOCKML_RL_SAMPLE_SKUS", "20")

import pytest  # noqa: E402

ROUTER_METHODS = ["Naive2", "SES", "Theta", "TSB", "CrostonSBA", "ADIDA"]


@pytest.fixture(autouse=True)
def _no_leaked_connections():
    """Each test starts with the Airflow connections the session started with. Why: stockml's in-process
    code points ``AIRFLOW_CONN_STOCKML_SOURCE`` at its home's SQLite file in ``os.environ`` (and ad-hoc
    targets likewise), which outlives a test and would reach the next test's subprocesses: with two test
    processes, which test runs after which changes (seen: a CLI run writing into another test's source)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
    yield
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_") and k not in before]:
        del os.environ[key]
    os.environ.update(before)


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


# CI: a skip is a failure, and the run ends with the tests per layer (tests/support/ci_guard.py)
from ci_guard import pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary  # noqa: E402, F401
