"""Alert deliveries recorded as rows of ``stock_alert_deliveries``, as ``notify_ops`` records them.

The alerts really travel (a local ``http.server`` and aiosmtpd's SMTP server, the connections given as
``AIRFLOW_CONN_*``) through :func:`stockml_airflow.notifications.notify_all`, whose ``record`` is
:func:`stockml.steps.alert_deliveries.record_deliveries` writing to a SQLite source database, exactly what
``dags/stock_monitoring.py`` composes. Asserted: a delivered and a failed delivery are rows with their
outcome, a re-run of the day leaves one set, and a later run of the same day keeps what the first sent.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from receivers import http_receiver, smtp_server

from monitoring.alerts import Alert
from stockml.connections import sqlite_conn_json
from stockml.settings import Settings
from stockml.steps.alert_deliveries import delivery_rows, record_deliveries, write_deliveries
from training.data.store import read_output

WEBHOOK_ENV = "AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK"
SMTP_ENV = "AIRFLOW_CONN_STOCKML_ALERT_SMTP"
DAY = "2026-11-14T00:00:00+00:00"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """(notifications module, settings, source engine): the source a SQLite file, no alert channel yet."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "plugins"))  # as Airflow puts it
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    monkeypatch.delenv(SMTP_ENV, raising=False)
    db = tmp_path / "source.db"
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    from stockml_airflow import notifications

    engine = sa.create_engine(f"sqlite:///{db}")
    yield notifications, Settings(home=tmp_path / "home"), engine
    engine.dispose()


def _channels(mp: pytest.MonkeyPatch, webhook_url: str, smtp_port: int) -> None:
    policy = {"retries": 1, "backoff_s": 0}
    mp.setenv(WEBHOOK_ENV, json.dumps({"conn_type": "http", "extra": {"url": webhook_url, **policy}}))
    extra = {"from": "airflow@example.org", "to": ["ops@example.org"], **policy}
    mp.setenv(SMTP_ENV, json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port, "extra": extra}))


def _alerts() -> list[dict]:
    degradation = Alert(kind="degradation", title="stockml: degradation on the demand up to 2026-11-09",
                        text="Degradation: weekly MASE 2.9 above the limit 1.8")  # fmt: skip
    failed = Alert(kind="promotion_failed", title="stockml: the bandit's promotion of stockml-router v3 failed",
                   text="Promotion failed: ...", figures={"error": "registry down"})  # fmt: skip
    return [degradation.to_dict(), failed.to_dict()]


def _rows(engine: sa.Engine) -> pd.DataFrame:
    return read_output(engine, "stock_alert_deliveries").sort_values(["kind", "channel"]).reset_index(drop=True)


def test_delivered_alerts_are_rows_and_a_re_run_of_the_day_leaves_one_set(env, monkeypatch):
    notifications, s, engine = env
    alerts = _alerts()
    with http_receiver() as rx, smtp_server() as smtp:
        _channels(monkeypatch, rx.url, smtp.port)
        first = notifications.notify_all(alerts, functools.partial(record_deliveries, s, DAY, run_id="run-1"))
        again = notifications.notify_all(alerts, functools.partial(record_deliveries, s, DAY, run_id="run-2"))
        smtp.wait_for(4)
    assert [d["ok"] for d in first + again] == [True] * 8 and len(rx.requests) == 4
    rows = _rows(engine)
    assert len(rows) == 4 and set(rows["run_id"]) == {"run-2"}  # one set: the re-run replaced its rows
    assert not rows.duplicated(["pipeline", "cutoff_week", "alert_id", "channel"]).any()
    assert set(rows["pipeline"]) == {"stock_monitoring"} and set(rows["cutoff_week"]) == {"2026-11-14"}
    assert list(rows["kind"]) == ["degradation", "degradation", "promotion_failed", "promotion_failed"]
    assert list(rows["channel"]) == ["email", "webhook", "email", "webhook"]
    assert rows["ok"].astype(bool).all() and list(rows["attempts"]) == [1, 1, 1, 1]
    webhook = rows[rows["channel"] == "webhook"].iloc[0]
    assert webhook["target"] == f"http://127.0.0.1:{rx.port}/…" and webhook["status"] == 200  # the path is a secret
    assert rows.loc[rows["channel"] == "email", "target"].tolist() == ["ops@example.org"] * 2
    assert rows["title"].iloc[2] == "stockml: the bandit's promotion of stockml-router v3 failed"
    assert rows["delivered_at"].notna().all() and pd.isna(rows["error"]).all()
    assert set(rows["alert_id"]) == {Alert.from_dict(a).fingerprint() for a in alerts}
    assert pd.Timestamp(rows["logical_date"].iloc[0]) == pd.Timestamp("2026-11-14")

    # a later run of the same day alerts only what is new: the rows of what the first run sent stay
    new = Alert(kind="bandit_promotion", title="stockml: the bandit promoted stockml-router v4", text="x")
    with http_receiver() as rx, smtp_server() as smtp:
        _channels(monkeypatch, rx.url, smtp.port)
        notifications.notify_all([new.to_dict()], functools.partial(record_deliveries, s, DAY, run_id="run-3"))
    rows = _rows(engine)
    assert len(rows) == 6 and rows["kind"].value_counts().to_dict() == {
        "bandit_promotion": 2, "degradation": 2, "promotion_failed": 2}  # fmt: skip


def test_failed_deliveries_are_rows_before_the_task_fails(env, monkeypatch):
    notifications, s, engine = env
    with smtp_server() as smtp:
        closed = smtp.port  # closed once the block ends
    with http_receiver([500]) as rx:  # a receiver that answers 500 to every try
        _channels(monkeypatch, rx.url, closed)
        record = functools.partial(record_deliveries, s, DAY, run_id="run-1")
        with pytest.raises(notifications.AlertsNotDelivered, match="no alert reached anyone"):
            notifications.notify_all(_alerts()[:1], record)
        assert len(rx.requests) == 2  # one try and one retry
    rows = _rows(engine).set_index("channel")
    assert len(rows) == 2 and not rows["ok"].astype(bool).any()
    assert rows.loc["webhook", "status"] == 500 and rows.loc["webhook", "attempts"] == 2
    assert rows.loc["webhook", "error"].startswith("HTTP 500: ")
    assert pd.isna(rows.loc["email", "status"]) and rows.loc["email", "attempts"] == 2
    assert "ConnectionRefusedError" in rows.loc["email", "error"]
    # the retry Airflow makes (the same alert, now arriving) replaces the failed rows: one set
    with http_receiver() as rx, smtp_server() as smtp:
        _channels(monkeypatch, rx.url, smtp.port)
        notifications.notify_all(_alerts()[:1], functools.partial(record_deliveries, s, DAY, run_id="run-1-try-2"))
    rows = _rows(engine)
    assert len(rows) == 2 and rows["ok"].astype(bool).all() and set(rows["run_id"]) == {"run-1-try-2"}


def test_a_record_that_fails_is_logged_and_the_deliveries_still_returned(env, monkeypatch, caplog):
    notifications, _, _ = env

    def broken(deliveries: list[dict]) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    with http_receiver() as rx, caplog.at_level(logging.ERROR, logger="stockml.airflow"):
        monkeypatch.setenv(WEBHOOK_ENV, rx.url)
        out = notifications.notify_all(_alerts()[:1], broken)
    assert [d["ok"] for d in out] == [True] and out[0]["alert_id"] == Alert.from_dict(_alerts()[0]).fingerprint()
    assert "were sent but could not be recorded" in caplog.text


def test_bad_deliveries_and_days_are_clear_errors(env):
    _, _, engine = env
    with pytest.raises(ValueError, match="delivery 0 has no alert_id"):
        delivery_rows([{"channel": "webhook", "ok": True}])
    with pytest.raises(ValueError, match="need the monitored day"):
        write_deliveries(engine, None, [], "not a day", "r")
    assert delivery_rows([]).empty
