"""monitoring.alerts and monitoring.delivery: the wording, the two renderings, and real sends.

The webhook goes to a local ``http.server`` in a thread and the e-mail to aiosmtpd's SMTP server
(``tests/support/receivers.py``); the tests assert on exactly what arrived.
"""

from __future__ import annotations

import json

import pytest
from receivers import http_receiver, smtp_server

from monitoring.alerts import Alert, degradation_text, drift_text, promotion_failed_text
from monitoring.delivery import SmtpServer, post_json, send_email, sign, verify

DRIFT_FIGURES = {
    "drifted": True,
    "drifted_columns": ["level_yoy", "spread_yoy", "shape_yoy"],
    "columns": {
        "level_yoy": {"p_value": 0.0003},
        "spread_yoy": {"p_value": 0.004},
        "shape_yoy": {"p_value": 0.008},
        "zero_share_yoy": {"p_value": 0.5},
    },
    "n_current": 300,
}


def _alert() -> Alert:
    return Alert(
        kind="drift",
        title="stockml: drift on the demand up to 2026-11-16",
        text=drift_text(DRIFT_FIGURES),
        figures={"share": 0.75, "n_current": 300, "nested": {"a": 1}},
        links={"dashboard": "http://127.0.0.1:8000/projects"},
    )


def test_the_sentences_carry_the_figures():
    assert drift_text(DRIFT_FIGURES) == (
        "Drift: 3 of 4 features drifted (level_yoy p=0.0003, spread_yoy p=0.004, shape_yoy p=0.008) on 300 products"
    )
    text = degradation_text(
        {"recent": [{"ds": "2026-11-09", "mase": 2.91}, {"ds": "2026-11-16", "mase": 3.07}], "limit": 1.8,
         "ratio": 1.2, "backtest_mase": 1.5, "consecutive_weeks_above": 2, "model_version": "stockml-router/v1"}
    )  # fmt: skip
    assert text == (
        "Degradation: weekly MASE 2.91, 3.07 above the limit 1.8 (1.2 x backtest 1.5) for 2 week(s) (stockml-router/v1)"
    )


def test_a_failed_promotion_says_which_version_why_and_what_to_do():
    decision = {"model_name": "stockml-router", "champion_version": "2", "challenger_version": "3",
                "p_better": 0.971, "challenger_n": 240,
                "error": "API request to http://mlflow:5000/api/2.0/mlflow/registered-models/alias failed:\n  "
                         "Connection refused"}  # fmt: skip
    assert promotion_failed_text(decision) == (
        "Promotion failed: the bandit chose stockml-router v3 over v2 (P(better) 0.971 after 240 outcomes) but the "
        "registry call failed (API request to http://mlflow:5000/api/2.0/mlflow/registered-models/alias failed: "
        "Connection refused); v2 stays champion. Check that the service reaches the MLflow registry; the bandit "
        "asks again after more outcomes, or promote it now: stockml promote --name stockml-router --version 3"
    )
    assert "(no error recorded)" in promotion_failed_text({**decision, "error": None})
    assert len(promotion_failed_text({**decision, "error": "x" * 5000})) < 1000  # a stack of text is cut
    alert = Alert(kind="promotion_failed", title="t", text=promotion_failed_text(decision))
    assert alert.fingerprint() == Alert.from_dict(alert.to_dict()).fingerprint()  # the same alert again
    assert alert.fingerprint() != Alert(kind="promotion_failed", title="t", text="other").fingerprint()


def test_an_alert_checks_its_kind_and_round_trips():
    with pytest.raises(ValueError, match="kind 'promotion'"):
        Alert(kind="promotion", title="t", text="x")
    with pytest.raises(ValueError, match="severity"):
        Alert(kind="drift", title="t", text="x", severity="loud")
    alert = _alert()
    assert Alert.from_dict(alert.to_dict()) == alert


def test_webhook_payload_is_slack_shaped():
    body = _alert().webhook_payload()
    assert body["text"].startswith("[warning] stockml: drift on the demand up to 2026-11-16: Drift: 3 of 4")
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "section", "context"]
    fields = {f["text"] for f in body["blocks"][2]["fields"]}
    assert fields == {"*share*\n0.75", "*n_current*\n300", "*nested.a*\n1"}
    assert "<http://127.0.0.1:8000/projects|dashboard>" in body["blocks"][3]["elements"][0]["text"]


def test_email_rendering():
    msg = _alert().email("stockml@example.org", ["ops@example.org", "oncall@example.org"])
    assert msg["Subject"] == "[stockml warning] stockml: drift on the demand up to 2026-11-16"
    assert msg["To"] == "ops@example.org, oncall@example.org" and msg["X-Stockml-Alert-Kind"] == "drift"
    body = msg.get_content()
    assert body.startswith("Drift: 3 of 4 features drifted") and "share: 0.75" in body
    assert "dashboard: http://127.0.0.1:8000/projects" in body
    with pytest.raises(ValueError, match="recipient"):
        _alert().email("a@b", [])


def test_webhook_retries_5xx_with_backoff_then_delivers():
    waits: list[float] = []
    body = json.dumps(_alert().webhook_payload()).encode()
    with http_receiver([503, 503, 200]) as rx:
        d = post_json(rx.url, body, {"X-Test": "1"}, retries=3, backoff_s=0.5, sleep=waits.append)
    assert d.ok and d.attempts == 3 and d.status == 200 and d.error is None
    assert waits == [0.5, 1.0]  # exponential back-off between the tries
    assert len(rx.requests) == 3 and all(r.body == body for r in rx.requests)
    assert rx.requests[0].headers["Content-Type"] == "application/json" and rx.requests[0].headers["X-Test"] == "1"
    assert json.loads(rx.requests[-1].body)["blocks"][0]["text"]["text"].startswith("stockml: drift")


def test_webhook_gives_up_after_the_retries_and_never_retries_4xx():
    with http_receiver([500]) as rx:
        d = post_json(rx.url, b"{}", retries=2, sleep=lambda s: None)
    assert not d.ok and d.attempts == 3 and d.status == 500 and "HTTP 500" in d.error
    with http_receiver([404]) as rx:
        d = post_json(rx.url, b"{}", retries=5, sleep=lambda s: None)
    assert not d.ok and d.attempts == 1 and d.status == 404 and len(rx.requests) == 1


def test_webhook_connection_refused_is_retried_and_reported():
    with http_receiver() as rx:
        url = rx.url  # the server is gone once the block ends: the port refuses connections
    d = post_json(url, b"{}", retries=1, sleep=lambda s: None, timeout_s=2)
    assert not d.ok and d.attempts == 2 and d.status is None and "ConnectError" in d.error


def test_signature_verifies_with_the_secret_only():
    body = b'{"job_id": "x"}'
    sig = sign("s3cret", body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", body, sig) and not verify("other", body, sig) and not verify("s3cret", body + b" ", sig)


def test_email_arrives_at_a_real_smtp_server():
    with smtp_server() as smtp:
        msg = _alert().email("stockml@example.org", ["ops@example.org"])
        d = send_email(msg, SmtpServer(smtp.host, smtp.port), sleep=lambda s: None)
        mails = smtp.wait_for(1)
    assert d.ok and d.attempts == 1 and d.target == "ops@example.org"
    got = mails[0]
    assert got.mail_from == "stockml@example.org" and got.rcpt_tos == ["ops@example.org"]
    assert got.message["Subject"] == "[stockml warning] stockml: drift on the demand up to 2026-11-16"
    assert got.message.get_content().startswith("Drift: 3 of 4 features drifted (level_yoy p=0.0003")


def test_email_to_a_closed_port_is_retried_then_reported():
    with smtp_server() as smtp:
        port = smtp.port
    waits: list[float] = []
    d = send_email(_alert().email("a@b.c", ["d@e.f"]), SmtpServer("127.0.0.1", port, timeout_s=2), sleep=waits.append)
    assert not d.ok and d.attempts == 3 and waits == [1.0, 2.0] and "ConnectionRefused" in d.error


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the test server's choice
def test_email_logs_in_when_the_server_wants_it_and_a_wrong_password_is_final():
    with smtp_server(login=("alerts", "pw")) as smtp:
        msg = _alert().email("stockml@example.org", ["ops@example.org"])
        ok = send_email(msg, SmtpServer(smtp.host, smtp.port, user="alerts", password="pw"), sleep=lambda s: None)
        smtp.wait_for(1)
        wrong = send_email(msg, SmtpServer(smtp.host, smtp.port, user="alerts", password="no"), sleep=lambda s: None)
        anonymous = send_email(msg, SmtpServer(smtp.host, smtp.port), sleep=lambda s: None)
    assert ok.ok and smtp.logins == ["alerts"] and len(smtp.messages) == 1
    assert not wrong.ok and wrong.attempts == 1 and wrong.status == 535  # a 5xx: not retried
    assert not anonymous.ok and anonymous.status == 530 and len(smtp.messages) == 1
