"""stock_reports: Mondays at 06:00 UTC, the weekly report for the week that just ended.

Writes ``<home>/reports/weekly-<date>.html`` (forecast accuracy by pattern and over time, drift
share over time, the bandit's traffic split and decisions, the order policies' costs) and logs it to
the MLflow experiment ``stockml-monitoring``; a rerun of the same logical date replaces both.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from stockml_airflow.common import START, default_args, maintenance_queue


@dag(
    dag_id="stock_reports",
    schedule="0 6 * * 1",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["stockml", "monitoring", "reports"],
    default_args=default_args(queue=maintenance_queue()),  # light work: the maintenance queue
    doc_md=__doc__,
)
def stock_reports():
    @task
    def weekly_report() -> dict:
        from stockml.settings import get_settings
        from stockml.steps.weekly_report import weekly_report_step

        logical = get_current_context()["logical_date"]  # a Monday: the report covers the week before it
        out = weekly_report_step(get_settings(), logical.date().subtract(days=1) if logical else None)
        return {"path": str(out.path), "mlflow_run_id": out.run_id}

    weekly_report()


stock_reports()
