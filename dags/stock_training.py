"""stock_training: classify → tune TSB → backtest → AutoML → router → register → promote → forecast.

Scheduled on the Asset ``stockml_weekly_demand`` (after every successful ingest), on the Asset
``stockml_drift`` (stock_monitoring's verdict: drift or degraded forecasts; the run adopts the
demand snapshot the verdict judged) and weekly on Sunday 03:00 UTC. Each step calls the same
functions as the ``stockml`` CLI. The router is registered in MLflow as ``stockml-router`` with
alias ``challenger``; ``MlflowPromoteOperator`` moves ``champion`` to it only if it is not worse on
the holdout (a refusal is a normal outcome: the champion stays). Forecasts come from the champion
and are written to ``stock_forecasts``; classes to ``stock_classes``. Outputs are keyed by
(``stock_training``, the last complete week of the demand the run adopted), not by the run id: any
re-run over the same data replaces them.
``recommend_orders`` (after ``classify``) tunes the classical order policies, trains the RL agent,
registers it as ``stockml-rl-agent`` (champion only when its held-out cost is not above the best
classical policy's) and writes ``stock_orders``.

With the setting ``lstm_register`` the LSTM is also trained on its own and registered as
``stockml-lstm`` (``train_lstm`` → ``promote_lstm``, beside the router); without it both are skipped.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from stockml_airflow.common import (
    DRIFT,
    START,
    WEEKLY_DEMAND,
    default_args,
    run_for,
    training_queue,
    triggering_snapshot,
)
from stockml_airflow.operators import MlflowPromoteOperator

from training.registry.names import LSTM_MODEL

# The heavy steps run on the training queue (workers sized for them); prepare, classify and the promotions
# are light and stay on the default queue.
TRAINING_QUEUE = training_queue()
# Either Asset triggers a run: new demand from stock_ingest, or stock_monitoring's drift/degradation verdict.
SCHEDULE = AssetOrTimeSchedule(
    timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=(WEEKLY_DEMAND | DRIFT)
)


@dag(
    dag_id="stock_training",
    schedule=SCHEDULE,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["stockml", "training", "mlflow"],
    default_args=default_args(),
    doc_md=__doc__,
)
def stock_training():
    @task
    def prepare() -> dict:
        """Start from the demand the triggering event names (the ingest's, or the snapshot monitoring
        judged drifted or degraded); the latest published one otherwise."""
        from stockml.steps.ingest import adopt_demand

        context = get_current_context()
        report = adopt_demand(run_for(context), triggering_snapshot(context))
        return {"skus": report["skus"], "last_week": report["last_week"]}

    @task
    def classify(_: dict) -> dict:
        from stockml.steps.classify import classify_step

        classes = classify_step(run_for(get_current_context()))
        return {"skus": len(classes), "patterns": classes["pattern"].value_counts().to_dict()}

    @task(queue=TRAINING_QUEUE)
    def tune_zoo(_: dict) -> dict:
        from stockml.steps.tuning import tune_zoo_step

        return tune_zoo_step(run_for(get_current_context()))

    @task(queue=TRAINING_QUEUE)
    def backtest(_: dict) -> dict:
        from stockml.steps.backtest import backtest_step

        result = backtest_step(run_for(get_current_context()))
        return {"best_method": result.best_method(), "excluded": len(result.excluded)}

    @task(queue=TRAINING_QUEUE)
    def automl(_: dict) -> dict:
        from stockml.steps.tuning import automl_step

        return automl_step(run_for(get_current_context()))

    @task(queue=TRAINING_QUEUE)
    def train_router(_: dict) -> dict:
        from stockml.steps.router import train_router_step

        run = run_for(get_current_context())
        version = train_router_step(run)
        return {
            "name": version.name,
            "version": version.version,
            "targets": run.load_json(run.layout.router)["targets"],
        }

    promote = MlflowPromoteOperator(task_id="promote", version="{{ ti.xcom_pull(task_ids='train_router')['version'] }}")

    @task(queue=TRAINING_QUEUE)
    def train_lstm(_: dict) -> dict:
        """The LSTM on its own as ``stockml-lstm`` (skipped, with its promotion, unless ``lstm_register``)."""
        from stockml.steps.lstm import train_lstm_step

        run = run_for(get_current_context())
        if not run.settings.lstm_register:
            raise AirflowSkipException("lstm_register is off: stockml-lstm is not trained in this run")
        version = train_lstm_step(run)
        return {"name": version.name, "version": version.version}

    # Runs after a skipped train_lstm too (and skips itself): a cleared run re-runs every task.
    promote_lstm = MlflowPromoteOperator(
        task_id="promote_lstm",
        model_name=LSTM_MODEL,
        version="{{ (ti.xcom_pull(task_ids='train_lstm') or {}).get('version', '') }}",
        enabled_by="lstm_register",
        trigger_rule="none_failed",
    )

    @task(queue=TRAINING_QUEUE)
    def forecast(_: dict) -> dict:
        from stockml.steps.champion import forecast_with_champion

        fc = forecast_with_champion(run_for(get_current_context()))
        return {"rows": len(fc), "model_version": str(fc["model_version"].iloc[0])}

    @task(queue=TRAINING_QUEUE)
    def recommend_orders(_: dict) -> dict:
        """Tune the classical policies, train the RL agent, register it (stockml-rl-agent), write stock_orders."""
        from stockml.steps.orders import orders_step

        run = run_for(get_current_context())
        if not run.settings.orders:
            raise AirflowSkipException("orders is off: no recommendations in this run")
        report = orders_step(run)
        if report.get("status") != "written":
            raise AirflowSkipException(f"orders skipped: {report.get('reason')}")
        return {k: report[k] for k in ("skus", "with_order", "pattern_policy", "promotion")}

    prepared = prepare()
    classified = classify(prepared)
    recommend_orders(classified)
    trained = train_router(automl(backtest(tune_zoo(classified))))
    trained >> promote
    forecast(promote.output)
    train_lstm(prepared) >> promote_lstm


stock_training()
