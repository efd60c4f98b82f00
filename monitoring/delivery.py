"""Sending: a JSON POST with retries and back-off, an e-mail over SMTP, and the HMAC that signs a body.

Shared by the Airflow side (``stockml_airflow.notifications``: alerts to ops) and the service
(``serving.bentos.callbacks``: batch-job callbacks), so both retry, time out and report alike. Every
call returns a :class:`Delivery` (ok, attempts, last status, error) instead of raising: the caller
records it next to what it was about (a task log, a batch job's record) and never loses its own
result because a receiver was down.

Retry policy of :func:`post_json`: a connection error, a timeout or a 5xx is retried (the receiver may
come back), with ``backoff_s * 2**i`` seconds between tries; a 4xx is not (the receiver understood and
refused: sending the same body again cannot help), nor a redirect (a webhook that moved is a
configuration to fix, and following it could leave an allow-list). SMTP is retried on connection
errors and 4xx (transient) replies, not on 5xx (permanent) ones. Neither retries a certificate the
client does not trust: that is configuration, and the next try would fail the same way.

TLS (https, SMTP's STARTTLS and implicit TLS) always verifies the server's certificate and host name,
against the system's store (what :func:`ssl.create_default_context` loads, ``SSL_CERT_FILE`` included)
or, given ``ca_bundle`` (a PEM file), against the CAs in it only: how a receiver with a private CA is
trusted. There is no way to switch verification off: an untrusted certificate is a failed
:class:`Delivery` whose error says so and what to set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Stockml-Signature"
TIMESTAMP_HEADER = "X-Stockml-Timestamp"
CA_HINT = "for a private CA, give its PEM file as ca_bundle"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Delivery:
    """What became of one message on one channel."""

    channel: str  # "webhook" | "email" | "callback"
    target: str  # the URL (without credentials) or the recipients
    ok: bool
    attempts: int
    status: int | None = None  # last HTTP status or SMTP reply code
    error: str | None = None
    at: str = field(default_factory=_now)  # when it ended (UTC, ISO 8601)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaBundleError(ValueError):
    """A ``ca_bundle`` that is not a readable PEM file of certificates (a configuration error)."""


def tls_context(ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """A client TLS context that verifies the certificate and the host name: against the CAs of
    ``ca_bundle`` (a PEM file) when given, else the system's store. Raises :class:`CaBundleError`
    for a bundle that is missing or holds no certificate, so the caller can report it in words."""
    if ca_bundle is None or not str(ca_bundle).strip():
        return ssl.create_default_context()
    path = Path(ca_bundle).expanduser()
    if not path.is_file():
        raise CaBundleError(f"ca_bundle {str(path)!r} is not a file (expected the PEM file of the CA certificates)")
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise CaBundleError(f"ca_bundle {str(path)!r} holds no usable PEM certificate ({exc})") from None


def certificate_problem(exc: BaseException, where: str) -> str | None:
    """The error line of a server certificate the client does not trust (anywhere in ``exc``'s chain, as
    httpx wraps it twice), naming ``where`` and what to set; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = current.verify_message or current.reason or str(current)
            return f"TLS certificate of {where} not trusted: {why} ({CA_HINT})"
        current = current.__cause__ or current.__context__
    return None


def redacted(url: str) -> str:
    """``scheme://host[:port]/…``: a URL fit for logs when its path carries a token (Slack's webhooks)."""
    u = httpx.URL(url)
    return f"{u.scheme}://{u.host}{f':{u.port}' if u.port else ''}/…"


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of the exact body bytes with the shared secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (the header's value) is :func:`sign` of ``body``; constant-time."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    channel: str = "webhook",
    target: str | None = None,
    timeout_s: float = 10.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
    ca_bundle: str | Path | None = None,
) -> Delivery:
    """POST ``body`` (JSON bytes) to ``url``; at most ``1 + retries`` tries (see the module's policy).

    ``target`` is how the delivery names the receiver (default: the URL without credentials and query);
    pass :func:`redacted` for a URL whose path is a secret, as a chat webhook's is. ``ca_bundle``: the
    PEM file of the CAs an https receiver's certificate is checked against (default: the system's)."""
    sent_headers = {"Content-Type": "application/json", "User-Agent": "stockml-notify", **(headers or {})}
    parsed = httpx.URL(url)
    target = target or str(parsed.copy_with(username=None, password=None, query=None))
    try:
        context = tls_context(ca_bundle)
    except CaBundleError as exc:
        return Delivery(channel, target, False, 0, None, str(exc))
    status: int | None = None
    error: str | None = None
    attempts = 0
    with httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport, verify=context) as client:
        for attempt in range(retries + 1):
            if attempt:
                sleep(backoff_s * 2 ** (attempt - 1))
            attempts += 1
            try:
                response = client.post(url, content=body, headers=sent_headers)
            except httpx.HTTPError as exc:  # connection refused, DNS, timeout, a broken answer, a bad certificate
                status, error = None, f"{type(exc).__name__}: {exc}"[:500]
                if untrusted := certificate_problem(exc, parsed.host + (f":{parsed.port}" if parsed.port else "")):
                    error = untrusted
                    break
                continue
            status = response.status_code
            if status < 300:
                return Delivery(channel, target, True, attempts, status, None)
            error = f"HTTP {status}: {response.text[:200]}"
            if status < 500:
                break
    return Delivery(channel, target, False, attempts, status, error)


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send mail. ``ssl``: implicit TLS (port 465); ``starttls``: upgrade (587);
    ``ca_bundle``: the PEM file of the CAs the server's certificate is checked against (default: the system's)."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 10.0
    ca_bundle: str | None = None


def send_email(
    message: EmailMessage,
    server: SmtpServer,
    *,
    retries: int = 2,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Send ``message`` (its From/To headers) through ``server``; at most ``1 + retries`` tries."""
    target = str(message.get("To", ""))
    try:
        context = tls_context(server.ca_bundle)
    except CaBundleError as exc:
        return Delivery("email", target, False, 0, None, str(exc))
    status: int | None = None
    error: str | None = None
    attempts = 0
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        attempts += 1
        try:
            _send_once(message, server, context)
            return Delivery("email", target, True, attempts, 250, None)
        except smtplib.SMTPResponseException as exc:  # the server answered with an error code
            status, error = exc.smtp_code, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500]
            if exc.smtp_code >= 500:
                break
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused: permanent
            codes = [code for code, _ in exc.recipients.values()]
            status, error = (codes[0] if codes else None), f"recipients refused: {exc.recipients}"[:500]
            break
        except (OSError, smtplib.SMTPException) as exc:  # connection refused, timeout, TLS, disconnect
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
            if untrusted := certificate_problem(exc, f"{server.host}:{server.port}"):
                error = untrusted
                break
    return Delivery("email", target, False, attempts, status, error)


def _send_once(message: EmailMessage, server: SmtpServer, context: ssl.SSLContext) -> None:
    if server.ssl:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(server.host, server.port, timeout=server.timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout_s)
    with smtp:
        if server.starttls and not server.ssl:
            smtp.starttls(context=context)
        if server.user:
            smtp.login(server.user, server.password or "")
        smtp.send_message(message)
