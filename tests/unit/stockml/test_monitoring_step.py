"""stockml.steps.monitoring: the debounce, the Asset event's extra, the alerts, and the CLI on an empty home."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from typer.testing import CliRunner

from stockml.cli import app
from stockml.steps.monitoring import debounced, event_extra, requested_on
from stockml.steps.monitoring_alerts import build_alerts

DAY = dt.datetime(2026, 11, 14, tzinfo=dt.UTC)


def _history(*days_due: tuple[str, str, bool]) -> pd.DataFrame:
    return pd.DataFrame([{"check_name": c, "due": due, "logical_date": pd.Timestamp(d)} for d, c, due in days_due])


def test_a_reason_due_within_the_window_is_debounced():
    history = _history(("2026-11-12", "degradation", True), ("2026-11-13", "drift", False))
    assert debounced(history, "degradation", DAY, hours=72)  # 48 h ago
    assert not debounced(history, "degradation", DAY, hours=24)  # outside a 24 h window
    assert not debounced(history, "drift", DAY, hours=72)  # flagged but not due then: no event was asked for
    assert not debounced(history, "residual_drift", DAY, hours=72)
    assert not debounced(history, "degradation", DAY, hours=0)  # 0: no debounce
    # the same day (a re-run replaces its rows) and later days do not debounce this one
    assert not debounced(_history(("2026-11-14", "degradation", True), ("2026-11-15", "degradation", True)),
                         "degradation", DAY, hours=72)  # fmt: skip
    assert not debounced(pd.DataFrame(), "degradation", DAY, hours=72)


def test_a_re_run_of_a_day_sees_that_days_request():
    history = _history(("2026-11-14", "degradation", True), ("2026-11-14", "summary", True),
                       ("2026-11-14", "drift", False), ("2026-11-13", "residual_drift", True))  # fmt: skip
    history["cutoff_week"] = history["logical_date"].dt.date.astype(str)
    assert requested_on(history, DAY) == {"degradation"}
    assert requested_on(pd.DataFrame(), DAY) == set()


def _report(due: list[str]) -> dict:
    return {
        "reasons": ["degradation"],
        "due": due,
        "logical_date": DAY.isoformat(),
        "demand": {"pipeline": "stock_ingest", "cutoff_week": "2026-11-09", "run_id": "r", "dir": "/h/runs/r"},
        "checks": {"degradation": {"flagged": True, "status": "degraded", "limit": 1.8, "recent": []}},
    }


def test_the_event_extra_names_the_reasons_the_figures_and_the_snapshot():
    extra = event_extra(_report(["degradation"]))
    assert extra["reasons"] == ["degradation"] and extra["dir"] == "/h/runs/r"
    assert extra["figures"] == {"degradation": {"status": "degraded", "limit": 1.8, "recent": []}}
    assert extra["demand"]["cutoff_week"] == "2026-11-09"
    json.dumps(extra)  # an Asset event's extra must be JSON


def test_alerts_for_reasons_and_bandit_promotions():
    from monitoring.alerts import Alert

    promotion = {"model_name": "stockml-router", "champion_version": "1", "challenger_version": "2",
                 "p_better": 0.97, "challenger_n": 240, "created_at": "2026-11-13T10:00:00Z"}  # fmt: skip
    failed = promotion | {"action": "promote_failed", "challenger_version": "3", "error": "registry unreachable"}
    alerts = build_alerts(_report([]), [promotion, failed], {"ops dashboard": "http://127.0.0.1:8000"})
    assert [a["kind"] for a in alerts] == ["degradation", "bandit_promotion", "promotion_failed"]
    assert alerts[2]["severity"] == "warning" and alerts[2]["figures"]["error"] == "registry unreachable"
    assert alerts[2]["title"] == "stockml: the bandit's promotion of stockml-router v3 failed"
    assert alerts[2]["text"].startswith(
        "Promotion failed: the bandit chose stockml-router v3 over v1 (P(better) 0.97 after 240 outcomes) but the "
        "registry call failed (registry unreachable); v1 stays champion. Check that the service reaches"
    )
    alerts = alerts[:2]
    assert alerts[0]["text"].startswith("Degradation: weekly MASE ? above the limit 1.8")
    assert alerts[0]["text"].endswith("; retraining already requested (debounced)")
    assert alerts[0]["figures"]["limit"] == 1.8 and alerts[0]["figures"]["check"] == "degradation"
    assert alerts[1]["text"] == (
        "Bandit promotion: stockml-router v2 replaced v1 as champion (P(better) 0.97 after 240 outcomes)"
    )
    assert alerts[1]["severity"] == "info" and alerts[1]["links"] == {"ops dashboard": "http://127.0.0.1:8000"}
    assert [Alert.from_dict(a).kind for a in alerts] == ["degradation", "bandit_promotion"]  # the Alert's fields


def test_drift_alerts_name_the_drifted_features():
    report = _report(["drift", "residual_drift"]) | {"reasons": ["drift", "residual_drift"]}
    report["checks"] = {
        "drift": {"flagged": True, "status": "checked", "drifted_columns": ["level_yoy"], "n_current": 300,
                  "columns": {"level_yoy": {"p_value": 0.0003}, "spread_yoy": {"p_value": 0.2}}},
        "residual_drift": {"flagged": True, "status": "checked", "n_current": 1200, "n_reference": 3400,
                           "columns": {"error": {"p_value": 0.0001}}},
    }  # fmt: skip
    drift, residual = build_alerts(report, [])
    assert drift["kind"] == residual["kind"] == "drift"
    assert drift["text"] == "Drift: 1 of 2 features drifted (level_yoy p=0.0003) on 300 products; retraining requested"
    assert (
        drift["figures"]["p_values"] == {"level_yoy": 0.0003, "spread_yoy": 0.2} and "columns" not in drift["figures"]
    )
    assert residual["text"].startswith("Forecast-error drift: the scaled errors of the window moved (p=0.0001; 1200")
    assert [a["figures"]["check"] for a in build_alerts(report | {"alerted_today": ["drift"]}, [])] == [
        "residual_drift"
    ]


def test_a_re_run_of_a_day_knows_what_that_day_flagged():
    from stockml.steps.monitoring_alerts import flagged_on

    history = pd.DataFrame([
        {"check_name": "drift", "flagged": True, "cutoff_week": "2026-11-14"},
        {"check_name": "summary", "flagged": True, "cutoff_week": "2026-11-14"},
        {"check_name": "degradation", "flagged": False, "cutoff_week": "2026-11-14"},
        {"check_name": "degradation", "flagged": True, "cutoff_week": "2026-11-13"},
    ])  # fmt: skip
    assert flagged_on(history, DAY) == {"drift"} and flagged_on(pd.DataFrame(), DAY) == set()


def test_a_re_run_sends_again_the_alert_that_reached_no_one():
    from stockml.steps.monitoring_alerts import alert_title, flagged_on

    history = pd.DataFrame([
        {"check_name": "drift", "flagged": True, "cutoff_week": "2026-11-14"},
        {"check_name": "degradation", "flagged": True, "cutoff_week": "2026-11-14"},
        {"check_name": "residual_drift", "flagged": True, "cutoff_week": "2026-11-14"},
    ])  # fmt: skip
    rows = [  # drift: both channels failed; degradation: the mail arrived; residual drift: nothing recorded
        ("drift", "webhook", False), ("drift", "email", False),
        ("degradation", "webhook", False), ("degradation", "email", True),
        ("drift", "webhook", True),  # another day's drift alert that arrived changes nothing here
    ]  # fmt: skip
    title = lambda reason: alert_title(reason, "2026-11-09")  # noqa: E731
    deliveries = pd.DataFrame(
        [{"title": title(r), "channel": c, "ok": ok, "cutoff_week": "2026-11-14"} for r, c, ok in rows]
    )
    deliveries.loc[4, "cutoff_week"] = "2026-11-13"
    assert flagged_on(history, DAY, deliveries) == {"degradation", "residual_drift"}
    assert flagged_on(history, DAY, deliveries.iloc[2:]) == {"drift", "degradation", "residual_drift"}


def test_the_bandit_cursor_makes_a_re_run_alert_nothing_twice():
    from stockml.steps.monitoring_alerts import BANDIT_CURSOR, bandit_cursor

    def summary(day: str, mark: str | None) -> dict:
        return {"check_name": "summary", "logical_date": pd.Timestamp(day, tz="UTC"),
                "figures": json.dumps({BANDIT_CURSOR: mark})}  # fmt: skip

    assert bandit_cursor(pd.DataFrame(), DAY) is None  # never monitored: every promotion is news
    old = pd.DataFrame([summary("2026-11-12", None), summary("2026-11-13", None)])
    assert bandit_cursor(old, DAY) == dt.datetime(2026, 11, 13, tzinfo=dt.UTC)  # before the cursor: the previous day
    # this day's own first run alerted a promotion of 10:00: its re-run starts after it
    marked = pd.DataFrame(
        [summary("2026-11-13", "2026-11-12T08:00:00+00:00"), summary("2026-11-14", "2026-11-14T10:00:00Z")]
    )
    assert bandit_cursor(marked, DAY) == dt.datetime(2026, 11, 14, 10, tzinfo=dt.UTC)


def test_the_cursor_moves_to_the_newest_alerted_promotion_whatever_the_time_zone_form():
    from stockml.steps.monitoring_alerts import newest_mark

    # SQLite gives the outcome store's times back naive (UTC): found by the DAG test, where they met a tz-aware day
    assert newest_mark(DAY, ["2026-11-14T10:00:00.000", "2026-11-13T09:00:00Z"]) == "2026-11-14T10:00:00+00:00"
    assert newest_mark(None, []) is None and newest_mark(DAY, []) == "2026-11-14T00:00:00+00:00"


def test_the_training_adopts_the_snapshot_the_triggering_event_names(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "plugins"))  # as Airflow puts it
    from stockml_airflow.common import triggering_snapshot

    ev = SimpleNamespace
    events = {"stockml_drift": [ev(extra={"dir": "/h/runs/a"})], "stockml_weekly_demand": [ev(extra=None)]}
    assert triggering_snapshot({"triggering_asset_events": events}) == "/h/runs/a"
    assert triggering_snapshot({}) is None


def test_monitor_on_an_empty_home_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRFLOW_CONN_STOCKML_SOURCE", raising=False)
    result = CliRunner().invoke(app, ["monitor"])
    assert result.exit_code == 0, result.output
    assert "run stock_ingest first" in result.output


def test_served_records_and_promotions_come_from_the_services_outcome_store(tmp_path):
    """The outcome store as the service creates it (its own table definitions), read back by monitoring."""
    import sqlalchemy as sa

    from serving.bentos import outcome_tables as ot
    from stockml.settings import Settings
    from stockml.steps.monitoring import bandit_promotions, served_records

    s = Settings(home=tmp_path / "home")
    assert served_records(s)[0].empty and bandit_promotions(s, None) == []  # no store yet: nothing to read
    engine = sa.create_engine(ot.default_url(s.home))
    ot.metadata.create_all(engine)
    at = dt.datetime(2026, 11, 13, 10, 0, 0, 123456, tzinfo=dt.UTC)  # the store keeps microseconds
    with engine.begin() as conn:
        conn.execute(ot.forecasts.insert(), [{"forecast_id": "f1", "sku": "a", "model_name": "stockml-router",
                     "model_version": "2", "alias": "champion", "horizon": 1, "scale": 2.0,
                     "points": json.dumps({"2026-11-16": 4.0}), "cached": False, "created_at": at}])  # fmt: skip
        conn.execute(ot.feedback.insert(), [{"forecast_id": "f1", "ds": "2026-11-16", "y": 5.0, "yhat": 4.0,
                     "reward": 0.5, "model_name": "stockml-router", "model_version": "2",
                     "created_at": at}])  # fmt: skip
        conn.execute(ot.decisions.insert(), [
            {"model_name": "stockml-router", "champion_version": "1", "challenger_version": "2", "action": action,
             "p_better": 0.97, "challenger_n": 240, "details": "{}", "created_at": at}
            for action in ("promote", "stop")
        ] + [{"model_name": "stockml-router", "champion_version": "1", "challenger_version": "3",
              "action": "promote_refused", "p_better": 0.96, "challenger_n": 300, "created_at": at,
              "details": json.dumps({"guardrail": {"reason": "holdout MASE 1.3 vs champion 1.1"}})},
             # details as serving.bentos.traffic records a failed registry call: record_decision(..., error=, evidence=)
             {"model_name": "stockml-router", "champion_version": "1", "challenger_version": "4",
              "action": "promote_failed", "p_better": 0.98, "challenger_n": 420, "created_at": at,
              "details": json.dumps({"error": "RestException: RESOURCE_DOES_NOT_EXIST: Model Version 4 not found",
                                     "evidence": {"p_better": 0.98}})}])  # fmt: skip
    engine.dispose()
    served, feedback = served_records(s)
    assert list(served["forecast_id"]) == ["f1"] and list(feedback["y"]) == [5.0]
    promotions = bandit_promotions(s, dt.datetime(2026, 11, 12, tzinfo=dt.UTC))
    assert [(p["challenger_version"], p["action"]) for p in promotions] == [
        ("2", "promote"), ("3", "promote_refused"), ("4", "promote_failed")]  # fmt: skip
    assert promotions[1]["reason"] == "holdout MASE 1.3 vs champion 1.1"  # the stop decision is no promotion
    assert promotions[2]["error"] == "RestException: RESOURCE_DOES_NOT_EXIST: Model Version 4 not found"
    _, refused, failed = build_alerts(_report([]) | {"reasons": []}, promotions)
    assert failed["kind"] == "promotion_failed" and "the bandit chose stockml-router v4 over v1" in failed["text"]
    assert "registry call failed (RestException: RESOURCE_DOES_NOT_EXIST: Model Version 4 not found)" in failed["text"]
    assert refused["kind"] == "promotion_refused" and refused["text"] == (
        "Promotion refused: stockml-router v3 was not promoted, v1 stays champion (the bandit asked, P(better) "
        "0.96 after 300 outcomes; the guardrails said: holdout MASE 1.3 vs champion 1.1)"
    )
    assert bandit_promotions(s, dt.datetime(2026, 11, 14, tzinfo=dt.UTC)) == []  # already seen by an earlier run
    from stockml.steps.monitoring_alerts import newest_mark

    # what the run that alerted them keeps: the next run (this day's re-run too) alerts none of the three again
    cursor = newest_mark(None, [p["created_at"] for p in promotions])
    assert cursor == "2026-11-13T10:00:00.123456+00:00" and bandit_promotions(s, pd.Timestamp(cursor)) == []
