"""Batch-job notifications: a signed callback to an allowed host and an e-mail, sent when a job ends.

``POST /batch`` takes two optional form fields: ``callback_url`` (``http(s)://<host>[:port][/path]``,
the host on ``STOCKML_NOTIFY__CALLBACK_HOSTS``) and ``notify_email`` (one address; accepted when the
service has an SMTP server, ``STOCKML_NOTIFY__SMTP_HOST`` and ``_FROM``). :class:`CallbackRules` is
the one check of both (the upload middleware answers 422 naming the field; the engine checks again)
and writes their schema into the OpenAPI: a pattern built from the allow-list, so what the schema
allows is exactly what is accepted. A field the service cannot honour is left out of the published
form, and sending it is a 422 that says why.

When a job ends (``done`` or ``failed``), :class:`Notifier` POSTs :func:`callback_body` (JSON: job id,
state, row counts, result URL, a ``timestamp``) with ``X-Stockml-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes with ``STOCKML_NOTIFY__CALLBACK_SECRET``, and the same timestamp
in ``X-Stockml-Timestamp`` (signed too, being in the body: a receiver refuses old or replayed calls).
It runs in its own thread, never in the request path, with the retries and back-off of
:func:`monitoring.delivery.post_json`; each outcome (state, attempts, last status, error) is written
into the job's ``job.json`` (``notifications``), which ``/batch_status`` shows. A delivery that was
still pending when the service stopped is sent at the next start. The job's result never depends on it.
An https callback and the SMTP session's TLS verify the receiver's certificate against
``STOCKML_NOTIFY__CA_BUNDLE`` (a private CA's PEM file) or else the system's store.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from monitoring.delivery import SIGNATURE_HEADER, TIMESTAMP_HEADER, SmtpServer, post_json, send_email, sign
from serving.bentos.batch import Job, JobStore
from stockml.settings_serving import NotifySettings

log = logging.getLogger("stockml.serving")

PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
EMAIL = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$"
MAX_URL = 2000
MAX_EMAIL = 254
FIELDS = ("callback_url", "notify_email")
EVENT = "batch_job.finished"


def _host_pattern(host: str) -> str:
    name, _, port = host.partition(":")
    return re.escape(name).replace("\\-", "-") + (f":{port}" if port else f"(?::{PORT})?")


@dataclass(frozen=True)
class CallbackRules:
    """Which callback hosts and whether e-mail are accepted (from :class:`NotifySettings`)."""

    hosts: tuple[str, ...] = ()
    email: bool = False

    @classmethod
    def from_settings(cls, notify: NotifySettings) -> CallbackRules:
        return cls(notify.hosts, notify.email_enabled)

    @property
    def url_pattern(self) -> str | None:
        if not self.hosts:
            return None
        return rf"^https?://(?:{'|'.join(_host_pattern(h) for h in self.hosts)})(?:/[!-~]*)?$"

    def form_properties(self) -> dict[str, dict[str, Any]]:
        """The OpenAPI properties of the fields this service accepts (none when it has neither channel)."""
        props: dict[str, dict[str, Any]] = {}
        if self.url_pattern:
            props["callback_url"] = {
                "type": "string", "maxLength": MAX_URL, "pattern": self.url_pattern,
                "description": "POSTed a signed JSON body when the job ends; the host must be on the service's "
                f"allow-list ({', '.join(self.hosts)}), any other is a 422.",
            }  # fmt: skip
        if self.email:
            props["notify_email"] = {
                "type": "string", "maxLength": MAX_EMAIL, "pattern": EMAIL,
                "description": "Sent an e-mail when the job ends.",
            }  # fmt: skip
        return props

    def check(self, field: str, value: object) -> str | None:
        """Why ``value`` cannot be used for ``field`` (``callback_url`` or ``notify_email``); None if it can."""
        if not isinstance(value, str):
            return f"{field} must be a plain form field, not a file"
        if field == "callback_url":
            return self._check_url(value)
        if not self.email:
            return "notify_email is not accepted: the service has no SMTP server (STOCKML_NOTIFY__SMTP_HOST/_FROM)"
        if len(value) > MAX_EMAIL or not re.search(EMAIL, value):
            return "notify_email must be one e-mail address (name@domain)"
        return None

    def _check_url(self, url: str) -> str | None:
        pattern = self.url_pattern
        if pattern is None:
            return (
                "callback_url is not accepted: the service has no callback allow-list (STOCKML_NOTIFY__CALLBACK_HOSTS)"
            )
        if len(url) <= MAX_URL and re.search(pattern, url):
            return None
        try:
            parts = urllib.parse.urlsplit(url.strip())
            host = parts.hostname
        except ValueError:
            parts, host = None, None
        if parts is not None and parts.scheme in ("http", "https") and host:
            allowed = {h.partition(":")[0] for h in self.hosts}
            if host not in allowed:
                return f"callback_url host {host!r} is not on the callback allow-list ({', '.join(self.hosts)})"
        return f"callback_url must be http(s)://<allowed host>[:port][/path] of at most {MAX_URL} characters"

    def problem(self, fields: dict[str, object]) -> tuple[str, str] | None:
        """The first unusable field of ``fields`` as (message, field name), or None."""
        for name in FIELDS:
            if fields.get(name) is not None and (why := self.check(name, fields[name])) is not None:
                return why, name
        return None


def callback_body(job: Job, result_rows: int | None, public_url: str | None, timestamp: int) -> bytes:
    """The callback's JSON bytes (exactly what is signed)."""
    body = {
        "event": EVENT,
        "job_id": job.job_id,
        "state": job.state,
        "rows": job.rows,
        "skus_total": job.skus_total,
        "skus_done": job.skus_done,
        "result_rows": result_rows,
        "horizon": job.horizon,
        "model_name": job.model_name,
        "model_version": job.model_version,
        "error": job.error,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "result_url": f"{(public_url or '').rstrip('/')}/batch_result" if job.state == "done" else None,
        "timestamp": timestamp,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def job_email(job: Job, result_rows: int | None, sender: str, public_url: str | None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"stockml batch job {job.job_id}: {job.state}"
    msg["From"] = sender
    msg["To"] = job.notify_email or ""
    lines = [
        f"Batch job {job.job_id} is {job.state}.",
        "",
        f"rows uploaded: {job.rows}",
        f"SKUs: {job.skus_done} of {job.skus_total}",
        f"forecast rows: {result_rows if result_rows is not None else '-'}",
        f"model: {job.model_name or '-'} v{job.model_version or '-'}",
    ]
    if job.error:
        lines.append(f"error: {job.error}")
    if job.state == "done":
        lines.append(f'result: POST {(public_url or "").rstrip("/")}/batch_result {{"job_id": "{job.job_id}"}}')
    msg.set_content("\n".join(lines) + "\n")
    return msg


class Notifier:
    """One background thread that sends the notifications of finished jobs and records each outcome."""

    def __init__(self, store: JobStore, settings: NotifySettings) -> None:
        self.store = store
        self.settings = settings
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="stockml-notify", daemon=True)

    def start(self) -> None:
        for job in self.store.all():  # sent at the next start: what was pending when the service stopped
            if any(n.get("state") == "pending" for n in job.notifications.values()):
                self.queue.put(job.job_id)
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(None)

    def finished(self, job: Job) -> None:
        """Called when ``job`` ended: mark its channels pending (on disk, so a restart resends) and queue it."""
        channels = [c for c, target in (("callback", job.callback_url), ("email", job.notify_email)) if target]
        if not channels:
            return
        for c in channels:
            job.notifications[c] = {"state": "pending", "attempts": 0}
        self.store.save(job)
        self.queue.put(job.job_id)

    def _loop(self) -> None:
        while (job_id := self.queue.get()) is not None:
            try:
                self.deliver(job_id)
            except Exception:  # never let one job's notification stop the others
                log.exception("batch job %s: notification failed", job_id)

    def deliver(self, job_id: str) -> None:
        job = self.store.load(job_id)
        if job is None:
            return
        rows = _result_rows(self.store, job)
        s = self.settings
        if job.notifications.get("callback", {}).get("state") == "pending" and job.callback_url:
            ts = int(time.time())
            body = callback_body(job, rows, s.public_url, ts)
            secret = s.callback_secret.get_secret_value() if s.callback_secret else ""
            headers = {SIGNATURE_HEADER: sign(secret, body), TIMESTAMP_HEADER: str(ts), "X-Stockml-Event": EVENT}
            d = post_json(
                job.callback_url, body, headers, channel="callback", timeout_s=s.timeout_s, retries=s.retries,
                backoff_s=s.backoff_s, ca_bundle=s.ca_bundle,
            )  # fmt: skip
            self._record(job, "callback", d.as_dict())
        if job.notifications.get("email", {}).get("state") == "pending" and job.notify_email and s.email_enabled:
            server = SmtpServer(
                s.smtp_host or "", s.smtp_port, s.smtp_user,
                s.smtp_password.get_secret_value() if s.smtp_password else None, s.smtp_starttls, s.smtp_ssl,
                s.timeout_s, s.ca_bundle,
            )  # fmt: skip
            msg = job_email(job, rows, s.smtp_from or "", s.public_url)
            d = send_email(msg, server, retries=s.retries, backoff_s=s.backoff_s)
            self._record(job, "email", d.as_dict())

    def _record(self, job: Job, channel: str, delivery: dict[str, Any]) -> None:
        delivery.pop("channel")
        job.notifications[channel] = {"state": "delivered" if delivery["ok"] else "failed", **delivery}
        self.store.save(job)
        level = logging.INFO if delivery["ok"] else logging.ERROR
        log.log(level, "batch job %s: %s %s after %d attempt(s)", job.job_id, channel,
                job.notifications[channel]["state"], delivery["attempts"])  # fmt: skip


def _result_rows(store: JobStore, job: Job) -> int | None:
    """Forecast rows in the result file (its lines less the header); None without a result."""
    path = store.result_path(job.job_id)
    if job.state != "done" or not path.exists():
        return None
    with path.open("rb") as fh:
        return max(0, sum(1 for _ in fh) - 1)
