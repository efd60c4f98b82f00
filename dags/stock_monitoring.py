"""stock_monitoring: daily performance check of the forecasts in service; retrains when they degrade.

Scores the champion's latest forecasts against the weeks observed since (MASE, lag-1 scale).
Above ``STOCKML_RETRAIN_MASE_THRESHOLD`` it triggers ``stock_training``. The monitoring issue
adds Evidently data- and error-drift checks to this DAG.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task
from stockml_airflow.common import START, default_args


@dag(
    dag_id="stock_monitoring",
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["stockml", "monitoring"],
    default_args=default_args(),
    doc_md=__doc__,
)
def stock_monitoring():
    @task
    def check_performance() -> dict:
        from stockml.maintenance import forecast_performance
        from stockml.settings import get_settings

        s = get_settings()
        return forecast_performance(s, s.retrain_mase_threshold)

    @task.branch
    def decide(report: dict) -> str | None:
        return "trigger_training" if report.get("degraded") else None

    retrain = TriggerDagRunOperator(task_id="trigger_training", trigger_dag_id="stock_training")
    decide(check_performance()) >> retrain


stock_monitoring()
