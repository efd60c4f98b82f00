"""Batch-job notifications: the allow-list and e-mail rules (422 naming the field, the published schema),
and what really arrives when a job ends: a signed callback at a local ``http.server`` (retried on 503)
and an e-mail at aiosmtpd's SMTP server, each outcome written into the job's record.

The forecaster is the fake of ``test_batch.py`` (the jobs' bookkeeping is under test, not the router);
the receivers are real servers in threads (``tests/support/receivers.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
from pydantic import ValidationError
from receivers import http_receiver, smtp_server
from test_batch import _fake_forecast

from serving.bentos.batch import BatchLimits, JobStore
from serving.bentos.batch_jobs import BatchJobs
from serving.bentos.callbacks import CallbackRules
from serving.bentos.errors import InvalidInput
from stockml.settings import Settings
from stockml.settings_serving import NotifySettings

SECRET = "shared-s3cret"
CSV = b"sku,ds,y\nA,2024-01-01,3\nA,2024-01-08,4\nB,2024-01-01,0\nB,2024-01-15,2.5\nC,2024-01-01,1\nC,2024-01-08,1\n"


def _settings(**kw: object) -> NotifySettings:
    base = {"callback_hosts": "127.0.0.1", "callback_secret": SECRET, "retries": 3, "backoff_s": 0.05}
    return NotifySettings(**(base | kw))


def _jobs(tmp_path, notify: NotifySettings) -> BatchJobs:
    champion = ("stockml-router", "7", _fake_forecast)
    return BatchJobs(JobStore(tmp_path / "jobs"), lambda: champion, BatchLimits(chunk_skus=2), notify)


def _wait_notified(jobs: BatchJobs, job_id: str, channels: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = jobs.status(job_id)
        states = {c: job.notifications[c].state for c in channels if c in job.notifications}
        if len(states) == len(channels) and "pending" not in states.values():
            return job.model_dump()
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_the_rules_accept_exactly_the_allowed_hosts():
    rules = CallbackRules(("127.0.0.1", "hooks.example.org:8443"), email=True)
    assert rules.check("callback_url", "http://127.0.0.1:9000/done?x=1") is None
    assert rules.check("callback_url", "https://hooks.example.org:8443/a/b") is None
    off = rules.check("callback_url", "https://evil.example.com/x")
    assert (
        off
        == "callback_url host 'evil.example.com' is not on the callback allow-list (127.0.0.1, hooks.example.org:8443)"
    )
    assert "must be http(s)" in rules.check("callback_url", "https://hooks.example.org:9999/")  # not its port
    assert "must be http(s)" in rules.check("callback_url", "ftp://127.0.0.1/x")
    assert "must be http(s)" in rules.check("callback_url", "http://127.0.0.1:99999/")
    assert rules.check("notify_email", "ops@example.org") is None
    assert "one e-mail address" in rules.check("notify_email", "ops@example.org, b@c.d")
    closed = CallbackRules()
    assert "no callback allow-list" in closed.check("callback_url", "http://127.0.0.1/")
    assert "no SMTP server" in closed.check("notify_email", "ops@example.org")
    assert closed.form_properties() == {} and set(rules.form_properties()) == {"callback_url", "notify_email"}
    pattern = rules.form_properties()["callback_url"]["pattern"]  # the published schema says the same
    assert re.search(pattern, "http://127.0.0.1:9000/done") and not re.search(pattern, "https://evil.example.com/")


def test_an_allow_list_needs_a_secret_and_lower_case_hosts():
    with pytest.raises(ValidationError, match="callback_secret"):
        NotifySettings(callback_hosts="127.0.0.1")
    with pytest.raises(ValidationError, match="lower-case host"):
        NotifySettings(callback_hosts="Hooks.Example.org", callback_secret="x")
    assert Settings(notify={"smtp_host": "mail", "smtp_from": "a@b.c"}).notify.email_enabled


def test_an_unusable_ca_bundle_stops_the_settings_at_load_with_the_fix(tmp_path):
    with pytest.raises(ValidationError, match=r"ca_bundle .*nope.pem.* is not a file \(expected the PEM file"):
        NotifySettings(ca_bundle=str(tmp_path / "nope.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValidationError, match="holds no usable PEM certificate"):
        NotifySettings(ca_bundle=str(junk))


def test_a_host_off_the_list_is_a_422_naming_the_field(tmp_path):
    jobs = _jobs(tmp_path, _settings())
    with pytest.raises(InvalidInput) as info:
        jobs.submit(CSV, 2, callback_url="https://evil.example.com/hook")
    assert info.value.status == 422 and info.value.body()["detail"][0]["field"] == "callback_url"
    assert "not on the callback allow-list" in info.value.body()["error"]
    assert jobs.jobs.all() == []  # no job was created


def test_the_http_layer_refuses_before_the_app_and_publishes_the_rules():
    from asgi_client import ASGIClient

    from serving.bentos.http import build_app
    from serving.bentos.middleware import UploadMiddleware

    rules = CallbackRules(("127.0.0.1",))
    app = build_app(lambda: None, rules=rules)
    c = ASGIClient(UploadMiddleware(app, rules=rules))
    off = c.post("/batch", files={"file": ("d.csv", CSV)}, data={"callback_url": "http://10.0.0.9/hook"})
    assert off.status_code == 422 and off.json()["detail"][0]["field"] == "callback_url"
    assert "'10.0.0.9' is not on the callback allow-list" in off.json()["error"]
    mail = c.post("/batch", files={"file": ("d.csv", CSV)}, data={"notify_email": "ops@example.org"})
    assert mail.status_code == 422 and mail.json()["detail"][0]["field"] == "notify_email"
    ok = c.post("/batch", files={"file": ("d.csv", CSV)}, data={"callback_url": "http://127.0.0.1:8080/hook"})
    assert ok.status_code == 503  # through the checks; this app has no engine yet
    form = app.openapi()["paths"]["/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"file", "horizon", "callback_url"} and "allow-list" in str(form)
    closed = build_app(lambda: None).openapi()["paths"]["/batch"]["post"]["requestBody"]["content"]
    assert set(closed["multipart/form-data"]["schema"]["properties"]) == {"file", "horizon"}


def test_a_finished_job_calls_back_signed_after_two_503s_and_mails(tmp_path):
    with http_receiver([503, 503, 200]) as rx, smtp_server() as smtp:
        notify = _settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_from="stockml@example.org",
                           public_url="https://forecast.example.org/")  # fmt: skip
        jobs = _jobs(tmp_path, notify)
        jobs.start()
        try:
            job = jobs.submit(CSV, 2, callback_url=rx.url, notify_email="planner@example.org")
            assert job.callback_url == rx.url and job.notify_email == "planner@example.org"
            out = _wait_notified(jobs, job.job_id, ("callback", "email"))
        finally:
            jobs.stop()
        mails = smtp.wait_for(1)
    assert out["state"] == "done"
    callback = out["notifications"]["callback"]
    assert callback["state"] == "delivered" and callback["attempts"] == 3 and callback["status"] == 200
    assert out["notifications"]["email"]["state"] == "delivered"
    assert len(rx.requests) == 3 and len({r.body for r in rx.requests}) == 1  # the same signed body each try
    got = rx.requests[-1]
    body = json.loads(got.body)
    assert body == {
        "event": "batch_job.finished", "job_id": job.job_id, "state": "done", "rows": 6, "skus_total": 3,
        "skus_done": 3, "result_rows": 6, "horizon": 2, "model_name": "stockml-router", "model_version": "7",
        "error": None, "created_at": out["created_at"], "finished_at": out["finished_at"],
        "result_url": "https://forecast.example.org/batch_result", "timestamp": body["timestamp"],
    }  # fmt: skip
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Stockml-Signature"] == expected
    assert got.headers["X-Stockml-Timestamp"] == str(body["timestamp"]) and abs(body["timestamp"] - time.time()) < 60
    mail = mails[0]
    assert mail.rcpt_tos == ["planner@example.org"] and mail.message["From"] == "stockml@example.org"
    assert mail.message["Subject"] == f"stockml batch job {job.job_id}: done"
    text = mail.message.get_content()
    assert "SKUs: 3 of 3" in text and "forecast rows: 6" in text and "https://forecast.example.org/batch_result" in text


def test_an_unusable_csv_is_called_back_as_failed(tmp_path):
    with http_receiver() as rx:
        jobs = _jobs(tmp_path, _settings())
        jobs.start()
        try:
            job = jobs.submit(b"sku,y\nA,1\n", 2, callback_url=rx.url)
            _wait_notified(jobs, job.job_id, ("callback",))
        finally:
            jobs.stop()
    body = json.loads(rx.requests[0].body)
    assert body["state"] == "failed" and "missing column" in body["error"] and body["result_url"] is None


def test_a_dead_receiver_fails_the_delivery_not_the_job(tmp_path):
    with http_receiver() as rx:
        dead = rx.url
    jobs = _jobs(tmp_path, _settings(retries=1))
    jobs.start()
    try:
        job = jobs.submit(CSV, 2, callback_url=dead)
        out = _wait_notified(jobs, job.job_id, ("callback",))
    finally:
        jobs.stop()
    callback = out["notifications"]["callback"]
    assert out["state"] == "done" and callback["state"] == "failed" and callback["attempts"] == 2
    assert "ConnectError" in callback["error"] and callback["status"] is None
    content, _, _ = jobs.result(job.job_id, "csv")  # the result is there all the same
    assert len(content.decode().strip().splitlines()) == 1 + 3 * 2


def test_a_delivery_pending_at_a_stop_is_sent_at_the_next_start(tmp_path):
    with http_receiver() as rx:
        first = _jobs(tmp_path, _settings())
        job = first.jobs.create_failed("the CSV cannot be used: test", 2, callback_url=rx.url)
        job.notifications["callback"] = {"state": "pending", "attempts": 0}  # what finished() leaves on disk
        first.jobs.save(job)
        again = _jobs(tmp_path, _settings())  # a restarted service
        again.start()
        try:
            out = _wait_notified(again, job.job_id, ("callback",))
        finally:
            again.stop()
    assert out["notifications"]["callback"]["state"] == "delivered" and len(rx.requests) == 1


def test_callbacks_and_mails_over_tls_trust_the_notify_ca_bundle(tmp_path):
    """An https receiver and an SMTP server with STARTTLS, certificates of a private CA: with
    ``STOCKML_NOTIFY__CA_BUNDLE`` the signed body arrives as sent; without it both deliveries fail on the
    certificate (in the job's record, in words), nothing arrives and the job is done all the same."""
    from tls import private_ca

    pki = private_ca(tmp_path / "pki")
    outcomes = {}
    with http_receiver(tls=pki.server_context()) as rx, smtp_server(tls=pki.server_context()) as smtp:
        for name, ca in (("untrusted", None), ("trusted", str(pki.ca))):
            notify = _settings(smtp_host=smtp.host, smtp_port=smtp.port, smtp_from="stockml@example.org",
                               smtp_starttls=True, ca_bundle=ca, retries=1)  # fmt: skip
            jobs = _jobs(tmp_path / name, notify)
            jobs.start()
            try:
                job = jobs.submit(CSV, 2, callback_url=rx.url, notify_email="planner@example.org")
                outcomes[name] = _wait_notified(jobs, job.job_id, ("callback", "email"))
            finally:
                jobs.stop()
            if name == "untrusted":
                assert rx.requests == [] and smtp.messages == []
        mails = smtp.wait_for(1)
    for channel in ("callback", "email"):
        failed = outcomes["untrusted"]["notifications"][channel]
        assert failed["state"] == "failed" and failed["attempts"] == 1, failed
        assert " not trusted: " in failed["error"] and "ca_bundle" in failed["error"], failed
        assert outcomes["trusted"]["notifications"][channel]["state"] == "delivered"
    assert outcomes["untrusted"]["state"] == "done"
    got = rx.requests[0]
    assert len(rx.requests) == 1 and json.loads(got.body)["job_id"] == outcomes["trusted"]["job_id"]
    assert (
        got.headers["X-Stockml-Signature"]
        == "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    )
    assert len(mails) == 1 and mails[0].rcpt_tos == ["planner@example.org"]
