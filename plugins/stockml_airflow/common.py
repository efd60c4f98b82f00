"""Assets, default arguments, the Celery queue names and the failure callback shared by every stockml DAG."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset

if TYPE_CHECKING:
    from stockml.settings import AirflowSettings

log = logging.getLogger("stockml.airflow")

OWNER = "stockml"
START = pendulum.datetime(2026, 1, 1, tz="UTC")

# Published by stock_ingest when a run's weekly demand is ready; stock_training is scheduled on it.
WEEKLY_DEMAND = Asset(name="stockml_weekly_demand", uri="file:///stockml/weekly_demand.parquet")
# Emitted by stock_monitoring when drift or degradation asks for a retraining (not debounced); its extra
# names the reasons, the figures and the demand snapshot judged (``dir``), which stock_training adopts.
DRIFT = Asset(name="stockml_drift", uri="file:///stockml/monitoring/drift")


def triggering_snapshot(context: dict[str, Any]) -> str | None:
    """The demand snapshot (run folder) named by the Asset events that triggered this run, if any.

    Both assets carry it as ``extra["dir"]``: the ingest that published it, or the monitoring
    verdict that judged it. With several events, the last one listed wins; None for a run that
    was not Asset-triggered (a scheduled run adopts the latest published demand).
    """
    source_dir = None
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            source_dir = (event.extra or {}).get("dir") or source_dir
    return source_dir


def record_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: log the failure and append it to the home folder's failures file.

    The file is what ops (and the monitoring DAG) can read without the Airflow UI; the log
    line carries the same fields for log shippers.
    """
    ti = context.get("ti") or context.get("task_instance")
    event = {
        "at": pendulum.now("UTC").isoformat(),
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": str(context.get("exception"))[:2000],
    }
    log.error("stockml task failed", extra={"failure": event})
    try:
        from stockml.settings import get_settings

        failures = get_settings().layout.failures
        failures.parent.mkdir(parents=True, exist_ok=True)
        with failures.open("a") as fh:
            fh.write(json.dumps(event) + "\n")
    except Exception:  # a callback must never raise (invalid settings included)
        log.exception("could not record the failure")


def alert_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: the ``dag_failed`` alert to ops (:mod:`stockml_airflow.notifications`; imported
    here, at the failure, so that parsing a DAG file does not import the senders)."""
    from stockml_airflow.notifications import alert_failure as send

    send(context)


def training_queue() -> str:
    """The Celery queue of the heavy tasks (``STOCKML_AIRFLOW__TRAINING_QUEUE``), for ``queue=`` on them.

    Heavy work (tuning, backtests, AutoML, the router, the LSTM, the RL agent, forecasts) uses every core
    of its worker; a queue of its own lets those run on workers sized for them while ingest, monitoring and
    promotions are never stuck behind a training run. Read when the DAG file is parsed: the DAG processor's
    environment decides, and the workers must consume the same name (start-distributed.sh reads it alike).
    """
    return _queues().training_queue


def maintenance_queue() -> str:
    """The Celery queue of the light housekeeping tasks (``STOCKML_AIRFLOW__MAINTENANCE_QUEUE``)."""
    return _queues().maintenance_queue


def _queues() -> AirflowSettings:
    """Only the settings object (not get_settings, which also configures the forecasters): parsing stays light."""
    from stockml.settings import Settings

    return Settings().airflow


def default_args(**overrides: Any) -> dict[str, Any]:
    """Retries with exponential back-off (sources and registries hiccup), a timeout, the failure callbacks:
    a list, which Airflow runs in order, each in its own try (a failing alert cannot lose the record).
    No queue: a task without one goes to Airflow's default queue (``queue=`` overrides, e.g.
    ``default_args(queue=maintenance_queue())`` for a whole DAG)."""
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": [record_failure, alert_failure],
    }
    args.update(overrides)
    return args


def fork_safe_workers() -> None:
    """Start worker pools with forkserver inside Airflow tasks.

    statsforecast parallelises with ``multiprocessing.Pool``, which forks by default. The task
    process runs Airflow's threads (supervisor comms, logging, the in-process API of `dags test`);
    a fork copies their held locks, and a pool worker can deadlock on one forever. This was seen
    with 300 SKUs under `airflow dags test`: a worker stuck on a futex and the task waiting for it.
    A forkserver starts workers from a clean single-threaded process instead.
    """
    import multiprocessing as mp

    if mp.get_start_method(allow_none=True) != "forkserver":
        mp.set_start_method("forkserver", force=True)


def run_for(context: dict[str, Any]) -> Any:
    """The stockml pipeline run of this DAG run.

    Its folder is named after the Airflow run id; its outputs are keyed by the DAG id and the
    data cut-off week the run read (never the run id, nor the logical date, which an
    Asset-triggered run lacks), so clearing a task or the run, triggering the same date again
    or an Asset-triggered run over the same data all replace one set of rows."""
    from stockml.run import Run
    from stockml.settings import get_settings

    fork_safe_workers()

    dag_id = context["dag"].dag_id
    return Run(get_settings(), f"{dag_id}__{context['run_id']}", pipeline=dag_id)
