"""stockml_airflow.notifications: the two Airflow connections, what arrives, and what a failing or missing
channel does. Connections are given as ``AIRFLOW_CONN_*`` variables (what Airflow reads first) pointing at
a local HTTP receiver and aiosmtpd's SMTP server; the alerts really travel."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from receivers import http_receiver, smtp_server

from monitoring.alerts import Alert

WEBHOOK_ENV = "AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK"
SMTP_ENV = "AIRFLOW_CONN_STOCKML_ALERT_SMTP"


@pytest.fixture
def notifications(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "plugins"))  # as Airflow puts it
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    monkeypatch.delenv(SMTP_ENV, raising=False)
    from stockml_airflow import notifications

    return notifications


def _alert() -> Alert:
    return Alert(kind="degradation", title="stockml: degradation", text="Degradation: weekly MASE 3 above 1.8")


def _smtp_conn(port: int, to: object = ("ops@example.org",), **extra: object) -> str:
    return json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
         "extra": {"from": "airflow@example.org", "to": list(to) if not isinstance(to, str) else to, **extra}}
    )  # fmt: skip


def test_webhook_url_from_each_connection_form(notifications):
    from airflow.sdk import Connection

    uri = Connection.from_uri("https://hooks.slack.com/services/T0/B0/XYZ", conn_id="x")
    assert notifications.webhook_url(uri) == "https://hooks.slack.com/services/T0/B0/XYZ"
    local = Connection.from_uri("http://127.0.0.1:8999/hook", conn_id="x")
    assert notifications.webhook_url(local) == "http://127.0.0.1:8999/hook"
    provider = Connection(conn_id="x", conn_type="http", host="chat.example.org", schema="https", port=8443,
                          extra=json.dumps({"path": "/hooks/abc"}))  # fmt: skip
    assert notifications.webhook_url(provider) == "https://chat.example.org:8443/hooks/abc"
    given = Connection(conn_id="x", conn_type="http", extra=json.dumps({"url": "https://mm.example.org/hooks/1"}))
    assert notifications.webhook_url(given) == "https://mm.example.org/hooks/1"
    assert notifications.webhook_url(Connection(conn_id="x", conn_type="http")) is None


def test_both_channels_deliver_exactly_the_alert(notifications, monkeypatch):
    with http_receiver() as rx, smtp_server() as smtp:
        monkeypatch.setenv(WEBHOOK_ENV, rx.url)
        monkeypatch.setenv(SMTP_ENV, _smtp_conn(smtp.port, "ops@example.org, oncall@example.org"))
        deliveries = notifications.notify(_alert())
        mails = smtp.wait_for(1)
    assert [(d["channel"], d["ok"], d["attempts"]) for d in deliveries] == [("webhook", True, 1), ("email", True, 1)]
    assert deliveries[0]["target"] == f"http://127.0.0.1:{rx.port}/…"  # logged: a webhook's path is its secret
    assert len(rx.requests) == 1 and rx.requests[0].path == "/hook"
    assert json.loads(rx.requests[0].body) == _alert().webhook_payload()
    mail = mails[0]
    assert mail.rcpt_tos == ["ops@example.org", "oncall@example.org"] and mail.mail_from == "airflow@example.org"
    assert mail.message["Subject"] == "[stockml warning] stockml: degradation"
    assert mail.message.get_content().startswith("Degradation: weekly MASE 3 above 1.8")


def test_no_channel_configured_warns_how_to_configure(notifications, caplog):
    with caplog.at_level(logging.WARNING, logger="stockml.airflow"):
        assert notifications.notify(_alert()) == []
    assert "no alert channel is configured" in caplog.text and "stockml_alert_webhook" in caplog.text


def test_a_failing_channel_is_logged_and_returned_never_raised(notifications, monkeypatch, caplog):
    with http_receiver() as rx:
        dead = rx.url  # closed once the block ends
    monkeypatch.setenv(WEBHOOK_ENV, json.dumps({"conn_type": "http", "extra": {"url": dead, "retries": 1,
                                                                              "backoff_s": 0}}))  # fmt: skip
    with smtp_server() as smtp, caplog.at_level(logging.INFO, logger="stockml.airflow"):
        monkeypatch.setenv(SMTP_ENV, _smtp_conn(smtp.port))
        deliveries = notifications.notify(_alert())
        partial = notifications.notify_all(
            [_alert().to_dict()]
        )  # one channel arrived: no raise, a retry would repeat it
        smtp.wait_for(2)
    webhook = deliveries[0]
    assert not webhook["ok"] and webhook["attempts"] == 2 and "ConnectError" in webhook["error"]
    assert deliveries[1]["ok"] and [d["ok"] for d in partial] == [False, True] and partial[0]["kind"] == "degradation"
    assert "alert degradation NOT sent by webhook" in caplog.text
    monkeypatch.delenv(SMTP_ENV)
    with pytest.raises(notifications.AlertsNotDelivered, match="no alert reached anyone"):
        notifications.notify_all([_alert().to_dict()])


def test_an_smtp_connection_without_recipients_is_a_failed_delivery(notifications, monkeypatch):
    monkeypatch.setenv(SMTP_ENV, _smtp_conn(25, to=[]))
    (d,) = notifications.notify(_alert())
    assert d["channel"] == "email" and not d["ok"] and d["attempts"] == 0 and '"to"' in d["error"]


def test_the_failure_alert_names_the_task_run_try_error_and_log(notifications):
    log_url = "http://airflow:8080/dags/stock_ingest/runs/manual__1/tasks/ingest?try_number=3"
    ti = SimpleNamespace(dag_id="stock_ingest", task_id="ingest", run_id="manual__1", try_number=3, log_url=log_url)
    context = {
        "ti": ti,
        "logical_date": pendulum.datetime(2026, 11, 22, tz="UTC"),
        "exception": ValueError("no valid rows"),
    }
    alert = notifications.failure_alert(context)
    assert alert.kind == "dag_failed" and alert.severity == "critical"
    assert alert.text == (
        "Task stock_ingest.ingest failed (run manual__1, logical date 2026-11-22T00:00:00+00:00, try 3): no valid rows"
    )
    assert alert.links == {"task log": ti.log_url} and alert.figures["try_number"] == 3


def test_a_guardrail_refusal_is_an_alert_and_a_first_champion_is_not(notifications):
    refused = {"name": "stockml-router", "candidate": "4", "previous_champion": "3", "promoted": False,
               "reason": "holdout MASE 1.2000 vs champion 1.1000 (beyond tolerance 0.0%)", "candidate_score": 1.2,
               "champion_score": 1.1, "tolerance": 0.0, "actor": "airflow:train", "at": "2026-11-22"}  # fmt: skip
    assert notifications.is_refusal(refused)
    assert not notifications.is_refusal(refused | {"promoted": True})
    assert not notifications.is_refusal(refused | {"candidate_score": None, "reason": "already champion"})
    alert = notifications.refused_alert(refused, "http://mlflow:5000")
    assert alert.kind == "promotion_refused" and alert.text.startswith(
        "Promotion refused: stockml-router v4 was not promoted, v3 stays champion (holdout MASE 1.2000"
    )
    assert alert.links == {"candidate in MLflow": "http://mlflow:5000/#/models/stockml-router/versions/4"}
    assert notifications.refused_alert(refused, "sqlite:///x.db").links == {}


def test_a_private_ca_in_the_connections_extra_verifies_both_channels(notifications, monkeypatch, tmp_path):
    """An https webhook and an SMTP server with STARTTLS, both with a certificate of a private CA: trusted
    through the extra's ``ca_bundle``; without it both fail on the certificate and nothing arrives."""
    from tls import private_ca

    pki = private_ca(tmp_path / "pki")
    with http_receiver(tls=pki.server_context()) as rx, smtp_server(tls=pki.server_context()) as smtp:
        for ca in (None, str(pki.ca)):
            with_ca = {"ca_bundle": ca} if ca else {}
            webhook = {"conn_type": "http", "extra": {"url": rx.url, "retries": 1, "backoff_s": 0, **with_ca}}
            monkeypatch.setenv(WEBHOOK_ENV, json.dumps(webhook))
            monkeypatch.setenv(SMTP_ENV, _smtp_conn(smtp.port, starttls=True, retries=1, backoff_s=0, **with_ca))
            if ca is None:
                untrusted = notifications.notify(_alert())
                assert rx.requests == [] and smtp.messages == []
            else:
                trusted = notifications.notify(_alert())
        mails = smtp.wait_for(1)
    assert [(d["channel"], d["ok"], d["attempts"]) for d in untrusted] == [("webhook", False, 1), ("email", False, 1)]
    assert all(" not trusted: " in d["error"] and "ca_bundle" in d["error"] for d in untrusted), untrusted
    assert [(d["channel"], d["ok"]) for d in trusted] == [("webhook", True), ("email", True)]
    assert len(rx.requests) == 1 and json.loads(rx.requests[0].body) == _alert().webhook_payload()
    assert len(mails) == 1 and mails[0].message["Subject"] == "[stockml warning] stockml: degradation"
