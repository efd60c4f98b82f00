"""The Airflow DAGs: integrity (imports, tags, owners, schedules) and real ``dag.test()`` runs.

Runs use a migrated SQLite metadata database in the test's AIRFLOW_HOME and the stockml
source on SQLite (and on Postgres in ``test_every_dag_on_postgres``); tasks execute in-process,
as Airflow's ``dag.test()`` does, against the real pipeline, MLflow registry and output tables.
Re-runs the way ops make them (a task cleared, the run cleared, the same date triggered again,
an Asset-triggered run) go through ``tests/support/airflow_runs.py`` and must each leave exactly
one set of output rows for the data consumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pendulum
import pytest
import sqlalchemy as sa
from airflow_runs import FAST_TRAINING, one_set
from receivers import http_receiver, smtp_server

from monitoring.drift import FEATURES
from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from training.data.demo import generate_catalogue
from training.data.store import read_output, write_source_tables

REPO = Path(__file__).resolve().parents[2]
DAG_IDS = {"stock_ingest", "stock_training", "stock_monitoring", "stock_maintenance", "stock_reports"}
FAST = FAST_TRAINING


def test_every_dag_imports_with_tags_owner_and_schedule(dagbag):
    assert not dagbag.import_errors, dagbag.import_errors
    assert set(dagbag.dag_ids) == DAG_IDS
    for dag_id in DAG_IDS:
        dag = dagbag.dags[dag_id]
        assert "stockml" in dag.tags, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert not dag.catchup, dag_id
        for t in dag.tasks:
            assert t.owner == "stockml", (dag_id, t.task_id)
            assert t.retries >= 2 and t.retry_exponential_backoff, (dag_id, t.task_id)
            assert t.on_failure_callback, (dag_id, t.task_id)
            assert t.execution_timeout is not None, (dag_id, t.task_id)
    assert dagbag.dags["stock_ingest"].timetable.expression == "0 0 * * *"  # @daily
    assert dagbag.dags["stock_monitoring"].timetable.expression == "0 0 * * *"
    assert dagbag.dags["stock_maintenance"].timetable.expression == "0 2 * * *"
    assert dagbag.dags["stock_reports"].timetable.expression == "0 6 * * 1"  # Mondays
    training = dagbag.dags["stock_training"].timetable  # on the Asset, or Sunday 03:00 UTC
    assert training.timetable.expression == "0 3 * * 0"
    assert "stockml_weekly_demand" in str(training.asset_condition)


def test_dag_structure(dagbag):
    training = dagbag.dags["stock_training"]
    order = [t.task_id for t in training.topological_sort()]
    expected = ["prepare", "classify", "tune_zoo", "backtest", "automl", "train_router", "promote", "forecast"]
    assert [t for t in order if t in expected] == expected
    # The LSTM on its own hangs off the adopted demand and is promoted through its own guardrail task.
    assert [t.task_id for t in training.get_task("train_lstm").upstream_list] == ["prepare"]
    # Orders need the demand patterns, nothing of the forecasting branch.
    assert [t.task_id for t in training.get_task("recommend_orders").upstream_list] == ["classify"]
    promote_lstm = training.get_task("promote_lstm")
    assert promote_lstm.model_name == "stockml-lstm" and promote_lstm.upstream_task_ids == {"train_lstm"}
    assert promote_lstm.enabled_by == "lstm_register" and promote_lstm.trigger_rule == "none_failed"
    ingest = dagbag.dags["stock_ingest"].get_task("ingest")
    assert [a.name for a in ingest.outlets] == ["stockml_weekly_demand"]


def _source(mp: pytest.MonkeyPatch, root: Path, skus: int = 30, dirty: bool = True) -> sa.Engine:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    db = home / "source.db"
    mp.setenv("STOCKML_HOME", str(home))
    mp.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    for k, v in FAST.items():
        mp.setenv(k, v)
    engine = sa.create_engine(f"sqlite:///{db}")
    cat = generate_catalogue(skus, 110, seed=5, dirty_rows=dirty)
    write_source_tables(engine, cat.products, cat.movements)
    return engine


def _test(dagbag, dag_id: str, day: int):
    dr = dagbag.dags[dag_id].test(logical_date=pendulum.datetime(2026, 11, day, tz="UTC"))
    return dr


def assert_reruns_leave_one_set(dagbag, target, schema: str | None, day: int) -> None:
    """Each way ops re-run things leaves exactly one run's rows for the data consumed.

    (a) a task cleared and re-run, (b) the whole DAG run cleared, (c) the same logical date
    triggered again (a new run id), (d) an Asset-triggered run (no logical date) over the data
    an ingest published; on stock_ingest (stock_quarantine) and stock_training (stock_classes,
    stock_forecasts).
    """
    from airflow_runs import asset_triggered_run, clear_and_rerun

    ingest_dag, training_dag = dagbag.dags["stock_ingest"], dagbag.dags["stock_training"]
    ingest = _test(dagbag, "stock_ingest", day)
    assert ingest.state == "success"
    quarantine = one_set(target, "stock_quarantine", schema, "stock_ingest", 4, f"stock_ingest__{ingest.run_id}")
    week = quarantine["cutoff_week"].iloc[0]
    report = json.loads(ingest_layout(ingest.run_id).ingest_report.read_text())
    assert week == report["last_week"]  # keyed by the data's last complete week, not the run

    cleared = clear_and_rerun(ingest_dag, ingest.run_id, ["ingest"])  # (a)
    assert cleared.state == "success"
    one_set(target, "stock_quarantine", schema, "stock_ingest", 4, f"stock_ingest__{ingest.run_id}")
    whole = clear_and_rerun(ingest_dag, ingest.run_id)  # (b)
    assert whole.state == "success"
    one_set(target, "stock_quarantine", schema, "stock_ingest", 4, f"stock_ingest__{ingest.run_id}")
    again = _test(dagbag, "stock_ingest", day)  # (c)
    assert again.state == "success" and again.run_id != ingest.run_id
    one_set(target, "stock_quarantine", schema, "stock_ingest", 4, f"stock_ingest__{again.run_id}")

    tr = _test(dagbag, "stock_training", day)
    assert tr.state == "success", [(ti.task_id, ti.state) for ti in tr.get_task_instances()]
    fc = read_output(target, "stock_forecasts", f"stock_training__{tr.run_id}", schema)
    assert fc["sku"].nunique() >= 25
    n_fc, n_classes = len(fc), 30
    n_orders = len(read_output(target, "stock_orders", f"stock_training__{tr.run_id}", schema))
    assert n_orders == n_classes  # one recommendation (or the reason there is none) per SKU

    def training_rows(run_id: str) -> None:
        for table, n in (("stock_forecasts", n_fc), ("stock_classes", n_classes), ("stock_orders", n_orders)):
            rows = one_set(target, table, schema, "stock_training", n, f"stock_training__{run_id}")
            assert set(rows["cutoff_week"]) == {week}  # training keys by the demand it adopted

    training_rows(tr.run_id)
    cleared = clear_and_rerun(training_dag, tr.run_id, ["classify", "forecast", "recommend_orders"])  # (a)
    assert cleared.state == "success", [(ti.task_id, ti.state) for ti in cleared.get_task_instances()]
    training_rows(tr.run_id)
    triggered = asset_triggered_run(training_dag, "stock_ingest", again.run_id)  # (d)
    assert triggered.state == "success", [(ti.task_id, ti.state) for ti in triggered.get_task_instances()]
    assert triggered.logical_date is None and triggered.run_type == "asset_triggered"
    training_rows(triggered.run_id)
    tr2 = _test(dagbag, "stock_training", day)  # (c)
    assert tr2.state == "success"
    training_rows(tr2.run_id)
    whole = clear_and_rerun(training_dag, tr2.run_id)  # (b)
    assert whole.state == "success", [(ti.task_id, ti.state) for ti in whole.get_task_instances()]
    training_rows(tr2.run_id)


def ingest_layout(run_id: str):
    """The run folder of stock_ingest's run ``run_id``."""
    from stockml.run import safe_run_id
    from stockml.settings import get_settings

    return get_settings().layout.run(safe_run_id(f"stock_ingest__{run_id}"))


def test_ingest_training_monitoring_maintenance_on_sqlite(dagbag, airflow_db, tmp_path, monkeypatch):
    engine = _source(monkeypatch, tmp_path)
    # The demo's 4 dirty rows are quarantined and the run still succeeds; every kind of re-run
    # leaves one set of rows.
    assert_reruns_leave_one_set(dagbag, engine, None, 23)

    import mlflow

    from training.registry import mlflow_registry as reg

    mlflow.set_tracking_uri(f"sqlite:///{HomeLayout(tmp_path / 'home').mlflow_db.resolve()}")
    champ = reg.version_by_alias(reg.MODEL_NAME, reg.CHAMPION)
    assert champ is not None and champ.tags["promotion.actor"].startswith("airflow:stock_training/")
    fc = read_output(engine, "stock_forecasts")
    assert set(fc["model_version"]) == {f"stockml-router/v{champ.version}"}

    mon = _test(dagbag, "stock_monitoring", 24)
    assert mon.state == "success"
    maint = _test(dagbag, "stock_maintenance", 24)
    assert maint.state == "success"
    reports = _test(dagbag, "stock_reports", 23)  # a Monday: the week ending Sunday 2026-11-22
    assert reports.state == "success"
    page = (tmp_path / "home" / "reports" / "weekly-2026-11-22.html").read_text()
    assert "the served run's backtest" in page and "No order recommendations yet." not in page


def _alert_channels(mp: pytest.MonkeyPatch, webhook_url: str, smtp_port: int) -> None:
    """The two alert connections as ops define them, pointing at the test's local receivers."""
    mp.setenv("AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK", webhook_url)
    extra = {"from": "airflow@example.org", "to": ["ops@example.org"], "backoff_s": 0}
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "extra": extra}
    mp.setenv("AIRFLOW_CONN_STOCKML_ALERT_SMTP", json.dumps(conn))


def test_source_without_valid_rows_fails_clearly(dagbag, airflow_db, tmp_path, monkeypatch):
    """The failure is recorded (failures.jsonl) and told to ops: one dag_failed alert on each channel."""
    home = tmp_path / "home"
    engine = _source(monkeypatch, tmp_path, skus=5)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE stock_movements SET qty_sold = -1"))
    with http_receiver() as hook, smtp_server() as smtp:
        _alert_channels(monkeypatch, hook.url, smtp.port)
        dr = _test(dagbag, "stock_ingest", 22)
        mails = smtp.wait_for(1)
    assert dr.state == "failed"
    failures = [json.loads(line) for line in HomeLayout(home).failures.read_text().splitlines()]
    assert failures[-1]["task_id"] == "ingest" and "no valid" in failures[-1]["error"].lower()
    assert pd.notna(failures[-1]["at"])
    assert len(hook.requests) == 1 and len(mails) == 1  # one alert per failed task instance (no retry here)
    alert = json.loads(hook.requests[0].body)
    assert alert["blocks"][0]["text"]["text"] == "stockml: stock_ingest.ingest failed"
    text = alert["blocks"][1]["text"]["text"]
    assert f"(run {dr.run_id}, logical date 2026-11-22T00:00:00+00:00, try 1)" in text and "no valid" in text.lower()
    assert f"/dags/stock_ingest/runs/{dr.run_id.replace('+', '%2B').replace(':', '%3A')}/tasks/ingest" in str(alert)
    assert mails[0].message["Subject"] == "[stockml critical] stockml: stock_ingest.ingest failed"


@pytest.mark.postgres
def test_every_dag_on_postgres(dagbag, airflow_db, tmp_path, monkeypatch):
    """The same DAG runs with the source (and the outputs) in PostgreSQL, in a throw-away schema."""
    from services import PG_URI, throwaway_pg_schema

    with throwaway_pg_schema("stockml_dag") as (engine, schema):
        cat = generate_catalogue(30, 110, seed=5)
        write_source_tables(engine, cat.products, cat.movements, schema)
        monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", PG_URI)
        monkeypatch.setenv("STOCKML_SOURCE_SCHEMA", schema)
        for k, v in FAST.items():
            monkeypatch.setenv(k, v)
        assert_reruns_leave_one_set(dagbag, engine, schema, 20)
        assert _test(dagbag, "stock_monitoring", 21).state == "success"
        assert _test(dagbag, "stock_maintenance", 21).state == "success"


def _shift_demand(engine: sa.Engine, after: str, factor: float) -> None:
    """Inject a level shift: every sale after ``after`` multiplied by ``factor`` (rounded to units)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE stock_movements SET qty_sold = ROUND(qty_sold * :f) WHERE date > :after"),
            {"f": factor, "after": after},
        )


def _drift_events(session) -> list:
    from airflow.models.asset import AssetEvent, AssetModel

    q = sa.select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
    return list(session.scalars(q.where(AssetModel.name == "stockml_drift").order_by(AssetEvent.id)))


def _states(dr) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dr.get_task_instances()}


def _record_bandit_promotion(home: Path) -> None:
    """A promotion by the service's bandit and one whose registry call failed, in the outcome store as the
    service writes them."""
    import datetime as dt

    from serving.bentos import outcome_tables as ot

    engine = sa.create_engine(ot.default_url(home))
    ot.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(ot.decisions.insert(), [{"model_name": "stockml-router", "champion_version": "1",
                     "challenger_version": "2", "action": "promote", "p_better": 0.97, "challenger_n": 240,
                     "details": "{}", "created_at": dt.datetime.now(dt.UTC)},
                     {"model_name": "stockml-router", "champion_version": "1", "challenger_version": "3",
                      "action": "promote_failed", "p_better": 0.98, "challenger_n": 300,
                      "details": json.dumps({"error": "MlflowException: registry unreachable"}),
                      "created_at": dt.datetime.now(dt.UTC)}])  # fmt: skip
    engine.dispose()


def _alerts(requests: list) -> dict[str, str]:
    """{kind: the alert's sentence} of the webhook bodies received (the last one of a kind)."""
    out = {}
    for r in requests:
        body = json.loads(r.body)
        kind = body["blocks"][-1]["elements"][0]["text"].split("`")[1]
        out[kind] = body["blocks"][1]["text"]["text"].split(" ", 1)[1]  # after the severity emoji
    return out


@pytest.mark.slow
def test_monitoring_asks_for_retraining_through_the_asset(dagbag, airflow_db, tmp_path, monkeypatch):
    """Forecasts made 8 weeks ago are judged on the weeks observed since. On the demo's own demand
    nothing is due; after the demand of the weeks since doubles (a level shift the degradation rule
    must catch: weekly MASE ~2 against the champion's backtest 1.5 x 1.2; a +30 % shift stays under
    it on this demo and is the drift check's to catch; the drift check flags the doubling too), the first
    monitoring run emits a ``stockml_drift`` event with both reasons and the snapshot judged, a second run within the
    debounce window emits none, ``stock_training`` is queued on the event and its Asset-triggered
    run adopts that snapshot. A re-run of a monitored day replaces that day's rows and sends no second event.

    With the two alert connections pointing at local receivers, ``notify_ops`` tells ops: the first
    degraded day sends the degradation alert, the bandit promotion and the failed one the service recorded
    (on the webhook and by e-mail; each delivery a row of ``stock_alert_deliveries``), its re-run sends
    nothing again, the next day repeats the degradation (debounced) only."""
    from airflow import settings
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.dag import DagModel
    from airflow_runs import asset_triggered_run

    engine = _source(monkeypatch, tmp_path)
    monkeypatch.setenv("STOCKML_CUTOFF", "2026-09-27")
    assert _test(dagbag, "stock_ingest", 10).state == "success"
    assert _test(dagbag, "stock_training", 10).state == "success"
    monkeypatch.delenv("STOCKML_CUTOFF")
    assert _test(dagbag, "stock_ingest", 11).state == "success"
    session = settings.Session()
    # DAGs are created paused; an Asset event queues runs of the unpaused consumers only (as ops run them).
    session.execute(sa.update(DagModel).where(DagModel.dag_id == "stock_training").values(is_paused=False))
    session.commit()

    healthy = _test(dagbag, "stock_monitoring", 12)
    assert healthy.state == "success" and _states(healthy)["request_retraining"] == "skipped", _states(healthy)
    rows = one_set(engine, "stock_monitoring", None, "stock_monitoring", 7, f"stock_monitoring__{healthy.run_id}")
    verdict = rows.set_index("check_name")
    assert not verdict.loc["summary", "flagged"] and verdict.loc["degradation", "status"] == "healthy"
    quality = json.loads(verdict.loc["quality", "figures"])
    assert {r["model_version"] for r in quality["by_version"]} == {"stockml-router/v1"}
    assert len(quality["by_week"]) == 8 and quality["by_pattern"]
    # the drift check judges against the reference rows registered with the champion, not a recomputation
    drift_row = json.loads(verdict.loc["drift", "figures"])
    assert drift_row["status"] == "checked" and drift_row["reference"] == "logged with the champion", drift_row
    assert drift_row["n_reference"] > 0 and set(drift_row["columns"]) == set(FEATURES)
    assert _drift_events(session) == []

    _shift_demand(engine, "2026-09-27", 2.0)
    shifted = _test(dagbag, "stock_ingest", 13)
    assert shifted.state == "success"
    _record_bandit_promotion(tmp_path / "home")
    with http_receiver() as hook, smtp_server() as smtp:
        _alert_channels(monkeypatch, hook.url, smtp.port)
        first = _test(dagbag, "stock_monitoring", 14)
        first_alerts, n_first, first_states = _alerts(hook.requests), len(hook.requests), _states(first)
        again = _test(dagbag, "stock_monitoring", 14)  # the same day again: its rows replaced, nothing re-sent
        n_after_rerun = len(hook.requests)
        debounced = _test(dagbag, "stock_monitoring", 15)  # a day later, inside the 72 h window
        next_day = _alerts(hook.requests[n_after_rerun:])
        mails = smtp.wait_for(len(hook.requests))
    monkeypatch.delenv("AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK")
    monkeypatch.delenv("AIRFLOW_CONN_STOCKML_ALERT_SMTP")
    assert {"degradation", "drift", "bandit_promotion"} <= set(first_alerts), first_alerts
    assert first_alerts["degradation"].startswith("Degradation: weekly MASE ")
    assert first_alerts["degradation"].endswith("; retraining requested")
    assert first_alerts["bandit_promotion"] == (
        "Bandit promotion: stockml-router v2 replaced v1 as champion (P(better) 0.97 after 240 outcomes)"
    )
    assert first_alerts["promotion_failed"].startswith(
        "Promotion failed: the bandit chose stockml-router v3 over v1 (P(better) 0.98 after 300 outcomes) but the "
        "registry call failed (MlflowException: registry unreachable); v1 stays champion."
    )
    assert n_after_rerun == n_first and _states(again)["notify_ops"] == "skipped", _states(again)
    assert next_day["degradation"].endswith("retraining already requested (debounced)")
    assert not {"bandit_promotion", "promotion_failed"} & set(next_day)  # alerted once, by the first run
    # every delivery of the first degraded day is a row (one set: its re-run sent nothing, so changed none)
    sent = read_output(engine, "stock_alert_deliveries").query("cutoff_week == '2026-11-14'")
    assert len(sent) == 2 * n_first and sent["ok"].astype(bool).all(), sent
    assert sorted(sent["channel"].value_counts().to_dict().items()) == [("email", n_first), ("webhook", n_first)]
    assert set(sent["kind"]) == set(first_alerts) and sent["run_id"].nunique() == 1
    assert len(mails) == len(hook.requests)
    assert {m.message["X-Stockml-Alert-Kind"] for m in mails} == set(first_alerts) | set(next_day)
    # (read before the re-run: dag.test() of the same logical date replaces the run)
    assert first.state == "success" and first_states["request_retraining"] == "success", first_states
    events = _drift_events(session)
    assert len(events) == 1 and events[0].source_run_id == first.run_id
    extra = events[0].extra
    # both rules see the doubled demand: the forecast error (degradation) and the data itself (drift: the
    # year-over-year level of the weeks since, against the reference rows registered with the champion)
    assert {"degradation", "drift"} <= set(extra["reasons"]), extra["reasons"]
    drift = extra["figures"]["drift"]
    assert drift["drifted"] and set(drift["drifted_columns"]) <= set(FEATURES), json.dumps(drift)[:3000]
    # on 21 products the level's Mann-Whitney p sits near the 0.01 line; its effect is the doubled level
    assert drift["columns"]["level_yoy"]["effect"] > 0.5, drift["columns"]["level_yoy"]
    assert drift["reference"] == "logged with the champion" and drift["share"] >= drift["drift_share"]
    assert first_alerts["drift"].startswith("Drift:"), first_alerts
    degradation = extra["figures"]["degradation"]
    assert degradation["status"] == "degraded" and all(w["mase"] > degradation["limit"] for w in degradation["recent"])
    assert extra["dir"] == str(ingest_layout(shifted.run_id).root.resolve())
    assert extra["demand"]["cutoff_week"] == "2026-11-16"
    queued = session.scalars(
        sa.select(AssetDagRunQueue)
        .join(AssetModel, AssetDagRunQueue.asset_id == AssetModel.id)
        .where(AssetModel.name == "stockml_drift", AssetDagRunQueue.target_dag_id == "stock_training")
    ).all()
    assert len(queued) == 1, queued

    assert again.state == "success" and _states(again)["request_retraining"] == "skipped", _states(again)
    rows = read_output(engine, "stock_monitoring").query("cutoff_week == '2026-11-14'")
    assert len(rows) == 7 and set(rows["run_id"]) == {f"stock_monitoring__{again.run_id}"}
    assert rows.set_index("check_name").loc["degradation", "due"]  # the day's request stands
    session.expire_all()
    assert len(_drift_events(session)) == 1

    assert debounced.state == "success" and _states(debounced)["request_retraining"] == "skipped"
    session.expire_all()
    assert len(_drift_events(session)) == 1
    summary = read_output(engine, "stock_monitoring").query("check_name == 'summary' and cutoff_week == '2026-11-15'")
    assert json.loads(summary["figures"].iloc[0])["debounced"] == extra["reasons"]

    # The retraining the event asks for adopts the snapshot monitoring judged.
    retrain = asset_triggered_run(dagbag.dags["stock_training"], "stock_monitoring", first.run_id)
    assert retrain.state == "success", _states(retrain)
    forecasts = read_output(engine, "stock_forecasts")
    assert "2026-11-16" in set(forecasts.loc[forecasts["pipeline"] == "stock_training", "cutoff_week"])
