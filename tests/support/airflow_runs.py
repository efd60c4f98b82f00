"""Re-runs the way ops make them, on Airflow's metadata database, with tasks run as ``dag.test()`` runs them.

- :func:`clear_and_rerun`: the REST API's "clear task instances" / "clear DAG run"
  (``SerializedDAG.clear(run_id=..., task_ids=...)``, what
  ``airflow.api_fastapi.core_api.services.public.dag_run.perform_clear_dag_run`` calls), then
  the cleared tasks run again under the same run id;
- :func:`asset_triggered_run`: a run created the way the scheduler creates an Asset-triggered one
  (``SchedulerJobRunner._create_dag_runs_asset_triggered``: ``run_type=ASSET_TRIGGERED``, no
  logical date, the asset events attached as ``consumed_asset_events``).

Both then drive the run with the loop of ``DAG.test()`` (``dr.update_state`` picks what is
ready; ``airflow.sdk.definitions.dag._run_task`` runs it in-process through the execution API),
instead of a scheduler and an executor: the tests are about what the tasks write when re-run,
and ``dag.test()`` has no entry point for an existing run or an Asset-triggered one.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import pandas as pd
import pendulum

from training.data.store import read_output

# Settings that make a stock_training run take seconds, not minutes (the DAG tests' and Hive's).
FAST_TRAINING = {
    "STOCKML_METHODS": json.dumps(["Naive2", "SES", "Theta", "TSB", "CrostonSBA"]),
    "STOCKML_N_JOBS": "1",
    "STOCKML_AUTOML_TRIALS": "2",
    "STOCKML_ZOO_TRIALS": "1",
    "STOCKML_BACKTEST_WINDOWS": "2",
    "STOCKML_HORIZON": "8",
}
# Each output table's row key within an output key (pipeline, cutoff_week).
ROW_KEYS = {
    "stock_classes": ["sku"],
    "stock_forecasts": ["sku", "ds"],
    "stock_related": ["sku", "related_sku"],
    "stock_orders": ["sku"],
    "stock_quarantine": ["sku", "reason", "date"],
    "stock_monitoring": ["check_name"],
    "stock_alert_deliveries": ["alert_id", "channel"],
}


def one_set(target: Any, table: str, schema: str | None, pipeline: str, n: int, run_id: str) -> pd.DataFrame:
    """Assert ``table`` holds exactly ``n`` rows of ``pipeline``, all of one output key and all
    written by ``run_id`` (the last run), with no duplicated row key; returns them.

    Rows of other pipelines (the CLI's, in a database shared by several tests) are left out."""
    everything = read_output(target, table, None, schema)
    rows = everything[everything["pipeline"] == pipeline]
    assert len(rows) == n, f"{table}: {len(rows)} rows of {pipeline}, expected one run's {n}"
    assert rows["cutoff_week"].nunique() == 1, rows["cutoff_week"].value_counts().to_dict()
    assert set(rows["run_id"]) == {run_id}, rows["run_id"].value_counts().to_dict()
    assert not rows.duplicated(["pipeline", "cutoff_week", *ROW_KEYS[table]]).any(), f"{table}: duplicated keys"
    return rows


def _scheduler_dag(dag: Any) -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def run_to_completion(dag: Any, run_id: str) -> Any:
    """Run the schedulable tasks of ``run_id`` until the run ends, as ``DAG.test()``'s loop does."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    session = settings.Session()
    dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    assert dr is not None, f"no run {run_id} of {dag.dag_id}"
    dr.dag = _scheduler_dag(dag)
    if dr.state != DagRunState.RUNNING:  # a cleared run is queued: the scheduler would start it
        dr.state = DagRunState.RUNNING
        session.commit()
    for _ in range(200):  # bounded: a bug must fail the test, not hang it
        if dr.state != DagRunState.RUNNING:
            break
        session.expire_all()
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
            ti.scheduled_dttm = pendulum.now("UTC")
        session.commit()
        for ti in [t for t in dr.get_task_instances(session=session) if t.state == TaskInstanceState.SCHEDULED]:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    return _load_run(dag.dag_id, run_id)


def _load_run(dag_id: str, run_id: str) -> Any:
    """The run as the database has it now (the loop's session may be gone: the task runner closes it)."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    settings.Session.remove()
    return settings.Session().scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


def clear_and_rerun(dag: Any, run_id: str, task_ids: Collection[str] | None = None) -> Any:
    """Clear ``task_ids`` of run ``run_id`` (all of them when None, i.e. clear the DAG run) and re-run them."""
    from airflow import settings

    session = settings.Session()
    before = {ti.task_id: ti.try_number for ti in _load_run(dag.dag_id, run_id).get_task_instances(session=session)}
    cleared = _scheduler_dag(dag).clear(
        run_id=run_id, task_ids=list(task_ids) if task_ids is not None else None, session=session
    )
    session.commit()
    assert cleared, f"clearing {task_ids or 'the run'} of {run_id} cleared nothing"
    dr = run_to_completion(dag, run_id)
    after = {ti.task_id: ti.try_number for ti in dr.get_task_instances()}
    for task_id in task_ids if task_ids is not None else before:  # each cleared task ran again
        assert after[task_id] > before[task_id], (task_id, before[task_id], after[task_id])
    return dr


def asset_triggered_run(dag: Any, source_dag_id: str, source_run_id: str) -> Any:
    """An ``ASSET_TRIGGERED`` run of ``dag`` (no logical date) consuming the events ``source_run_id`` emitted."""
    from airflow import settings
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    session = settings.Session()
    emitted = select(AssetEvent).where(
        AssetEvent.source_dag_id == source_dag_id, AssetEvent.source_run_id == source_run_id
    )
    events = list(session.scalars(emitted))
    assert events, f"{source_dag_id}/{source_run_id} emitted no asset event"
    now = pendulum.now("UTC")
    dr = _scheduler_dag(dag).create_dagrun(
        run_id=DagRun.generate_run_id(run_type=DagRunType.ASSET_TRIGGERED, logical_date=None, run_after=now),
        logical_date=None,
        data_interval=None,
        run_after=now,
        run_type=DagRunType.ASSET_TRIGGERED,
        triggered_by=DagRunTriggeredByType.ASSET,
        state=DagRunState.RUNNING,
        start_date=now,
        session=session,
    )
    dr.consumed_asset_events.extend(events)
    session.commit()
    run_id = dr.run_id
    session.close()
    return run_to_completion(dag, run_id)
