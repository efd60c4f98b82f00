"""stock_ingest: read the source, validate, quarantine bad rows, publish weekly demand (daily).

The source is the Airflow connection ``stockml_source`` (SQLite by default; Postgres or
HiveServer2 by setting ``AIRFLOW_CONN_STOCKML_SOURCE``). Bad rows go to ``stock_quarantine`` with
their reason and the run still succeeds; a source with no valid row fails without retrying
(retrying cannot fix data). When the source has an ``order_lines`` table the task also writes
the related products (``stock_related``); without one that part is skipped. On success the
Asset ``stockml_weekly_demand`` is updated, which schedules ``stock_training``.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from stockml_airflow.common import START, WEEKLY_DEMAND, default_args, run_for


@dag(
    dag_id="stock_ingest",
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["stockml", "ingest"],
    default_args=default_args(),
    doc_md=__doc__,
)
def stock_ingest():
    @task(outlets=[WEEKLY_DEMAND])
    def ingest() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from stockml.steps.ingest import ingest as run_ingest
        from training.data.source import SourceContractError
        from training.data.validate import NoValidRowsError

        context = get_current_context()
        run = run_for(context)
        try:
            report = run_ingest(run)
        except (NoValidRowsError, SourceContractError) as exc:
            raise AirflowFailException(str(exc)) from exc
        context["outlet_events"][WEEKLY_DEMAND].extra = {"run_id": run.run_id, "dir": str(run.dir.resolve())}
        keys = ("skus", "weeks", "movements_read", "movements_valid", "quarantined", "first_week", "last_week")
        return {"run_id": run.run_id, **{k: report[k] for k in keys}, "related": report["related"]["status"]}

    ingest()


stock_ingest()
