"""Which Celery queue every DAG task goes to: heavy steps on the training queue, housekeeping on the
maintenance queue, the rest on Airflow's default queue; the names come from the settings.

The DAGs are parsed with a DagBag as the DAG processor parses them (a task's queue is fixed at parse
time), once with the default names and once with ``STOCKML_AIRFLOW__*`` overrides. The whole table
is pinned, so a new task must be placed on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stockml.settings import Settings

REPO = Path(__file__).resolve().parents[3]
# (dag, task) -> "training" | "maintenance"; every task not listed is on the default queue.
PLACEMENT = {
    **{
        ("stock_training", t): "training"
        for t in ("tune_zoo", "backtest", "automl", "train_router", "train_lstm", "forecast", "recommend_orders")
    },
    **{("stock_maintenance", t): "maintenance" for t in ("prune_quarantine", "prune_runs", "report")},
    ("stock_reports", "weekly_report"): "maintenance",
}
LIGHT = {  # what stays on the default queue, listed so that a renamed task cannot slip through
    "stock_ingest": {"ingest"},
    "stock_monitoring": {"check", "request_retraining", "notify_ops"},
    "stock_training": {"prepare", "classify", "promote", "promote_lstm"},
}


def _queues(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[dict[tuple[str, str], str], str]:
    """(dag, task) -> queue of every parsed task, and Airflow's default queue."""
    from airflow.configuration import conf
    from airflow.models import DagBag

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    found = {(d, t.task_id): t.queue for d, dag in bag.dags.items() for t in dag.tasks}
    return found, conf.get("operators", "default_queue")


def _expected(tasks: set[tuple[str, str]], default: str, training: str, maintenance: str) -> dict[tuple[str, str], str]:
    names = {"training": training, "maintenance": maintenance}
    return {key: names[PLACEMENT[key]] if key in PLACEMENT else default for key in tasks}


def test_heavy_tasks_are_on_the_training_queue_and_housekeeping_on_maintenance(monkeypatch):
    found, default = _queues(monkeypatch, {})
    assert found == _expected(set(found), default, "training", "maintenance")
    listed = set(PLACEMENT) | {(d, t) for d, tasks in LIGHT.items() for t in tasks}
    assert set(found) == listed, set(found) ^ listed


def test_queue_names_follow_the_settings(monkeypatch):
    env = {"STOCKML_AIRFLOW__TRAINING_QUEUE": "gpu-big", "STOCKML_AIRFLOW__MAINTENANCE_QUEUE": "housekeeping"}
    found, default = _queues(monkeypatch, env)
    assert found == _expected(set(found), default, "gpu-big", "housekeeping")
    assert found[("stock_training", "backtest")] == "gpu-big"


@pytest.mark.parametrize("name", ["a,b", "Training", "", "with space"])
def test_a_queue_name_a_worker_cannot_consume_is_refused(monkeypatch, name):
    monkeypatch.setenv("STOCKML_AIRFLOW__TRAINING_QUEUE", name)
    with pytest.raises(ValidationError, match="training_queue"):
        Settings()
