"""stock_maintenance: daily at 02:00 UTC, remove what is past its retention and report it.

Quarantined source rows older than ``STOCKML_QUARANTINE_RETENTION_DAYS`` (90) and run folders
older than ``STOCKML_RUN_RETENTION_DAYS`` (30; never the latest demand or forecasts) are deleted.
"""

from __future__ import annotations

from airflow.sdk import dag, task
from stockml_airflow.common import START, default_args, maintenance_queue


@dag(
    dag_id="stock_maintenance",
    schedule="0 2 * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["stockml", "maintenance"],
    default_args=default_args(queue=maintenance_queue()),  # light work: the maintenance queue
    doc_md=__doc__,
)
def stock_maintenance():
    @task
    def prune_quarantine() -> int:
        from stockml.run import Run
        from stockml.settings import get_settings
        from training.data.store import prune_quarantine as prune

        run = Run(get_settings(), "maintenance")
        return prune(run.hook(), run.settings.quarantine_retention_days, run.settings.source_schema)

    @task
    def prune_runs() -> list[str]:
        from stockml.maintenance import prune_runs as prune
        from stockml.settings import get_settings

        s = get_settings()
        return prune(s, s.run_retention_days)

    @task
    def report(quarantined: int, runs: list[str]) -> dict:
        import logging

        summary = {"quarantine_rows_removed": quarantined, "run_folders_removed": len(runs), "runs": runs[:50]}
        logging.getLogger("stockml.maintenance").info("maintenance removed %s", summary)
        return summary

    report(prune_quarantine(), prune_runs())


stock_maintenance()
