"""stock_monitoring: daily checks of the models and decisions in service; asks for a retraining when they fail.

``check`` runs :func:`stockml.steps.monitoring.monitoring_step`: forecast quality (stored and served
forecasts against the realised demand: MAE, MASE, bias per model version, pattern and week, and
the degradation rule), Evidently data and forecast-error drift, realised order costs per policy,
serving health; the verdicts replace this day's rows in ``stock_monitoring``.
``request_retraining`` emits an event on the Asset ``stockml_drift`` (which ``stock_training`` is
scheduled on) when a reason is due, i.e. not debounced (``STOCKML_RETRAIN_DEBOUNCE_HOURS``); it is
skipped otherwise, and a skipped task emits no event. ``notify_ops`` sends the alerts (drift,
degradation, each bandit promotion, refused or failed promotion since the last one alerted) through
the Airflow connections ``stockml_alert_webhook`` and ``stockml_alert_smtp``
(:mod:`stockml_airflow.notifications`), records every delivery in ``stock_alert_deliveries`` under
the monitored day (:mod:`stockml.steps.alert_deliveries`: a re-run replaces that day's rows of the
alerts it sends again), and fails only when channels are configured and no alert reached any of them.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from stockml_airflow.common import DRIFT, START, default_args


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
    def check() -> dict:
        from stockml.settings import get_settings
        from stockml.steps.monitoring import event_extra, monitoring_step

        context = get_current_context()
        when = context.get("logical_date") or context["dag_run"].run_after
        report = monitoring_step(get_settings(), when, run_id=f"stock_monitoring__{context['run_id']}")
        return {k: report.get(k, []) for k in ("reasons", "due", "debounced", "alerts")} | {
            "extra": event_extra(report) if report.get("due") else None,
            "logical_date": report.get("logical_date"),
        }

    @task(outlets=[DRIFT])
    def request_retraining(verdict: dict) -> dict:
        if not verdict["due"]:
            why = "debounced: " + ", ".join(verdict["debounced"]) if verdict["debounced"] else "nothing to retrain for"
            raise AirflowSkipException(why)
        get_current_context()["outlet_events"][DRIFT].extra = verdict["extra"]
        return {"reasons": verdict["due"]}

    @task
    def notify_ops(verdict: dict) -> list[dict]:
        if not verdict["alerts"]:
            raise AirflowSkipException("nothing to tell")
        from functools import partial

        from stockml_airflow.notifications import notify_all

        from stockml.settings import get_settings
        from stockml.steps.alert_deliveries import record_deliveries

        run_id = f"stock_monitoring__{get_current_context()['run_id']}"
        record = partial(record_deliveries, get_settings(), verdict["logical_date"], run_id=run_id)
        return notify_all(verdict["alerts"], record)  # each delivery (channel, target, ok, ...) in the XCom too

    verdict = check()
    request_retraining(verdict)
    notify_ops(verdict)


stock_monitoring()
