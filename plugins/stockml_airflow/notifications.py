"""Alerts to ops from the DAGs: a chat webhook and e-mail, configured as two Airflow connections.

- ``stockml_alert_webhook`` (any HTTP connection): the URL is the extra ``{"url": ...}`` if given,
  else built from host, port and path. In the URI form (``AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK=
  'https://hooks.slack.com/services/T0/B0/XYZ'``) Airflow puts the path in ``schema``; in the HTTP
  provider's form ``schema`` is the scheme (``http``/``https``) and the path is the extra ``path``.
- ``stockml_alert_smtp`` (an SMTP connection): host, port, login, password; extra ``{"from": ...,
  "to": [...] or "a@x,b@y", "starttls": true, "ssl": false}`` (``from_email`` is read too, the SMTP
  provider's name).

Both also take ``retries``, ``backoff_s``, ``timeout_s`` and ``ca_bundle`` in their extra: the PEM file
of the CAs the https webhook's or the SMTP server's (STARTTLS, SSL) certificate is checked against, for a
private CA (default: the system's store; verification cannot be switched off). Each channel is optional;
with neither defined :func:`notify` logs a warning saying how to define them. Sending is
:mod:`monitoring.delivery` (the service's batch callbacks use the same code), not the SMTP provider's
hook or a Slack provider: one sender for both sides, and the service must not depend on Airflow.
A channel that fails is logged at ERROR with the reason and returned in the deliveries: the caller
decides what that means for its task (see ``dags/stock_monitoring.py``); nothing here raises.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

from monitoring.alerts import Alert, dag_failed_text, promotion_refused_text
from monitoring.delivery import Delivery, SmtpServer, post_json, redacted, send_email

log = logging.getLogger("stockml.airflow")

WEBHOOK_CONN_ID = "stockml_alert_webhook"
SMTP_CONN_ID = "stockml_alert_smtp"
HOW_TO = (
    f"define the Airflow connection '{WEBHOOK_CONN_ID}' (a Slack-compatible webhook URL) and/or "
    f'\'{SMTP_CONN_ID}\' (an SMTP server with extra {{"from": ..., "to": [...]}}), e.g. '
    f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}='https://hooks.slack.com/services/...' (README, \"Alerts\")"
)
SCHEMES = ("http", "https")


def _connection(conn_id: str) -> Any | None:
    """The Airflow connection, or None when it is not defined (Airflow's not-found types differ by version)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception:
        return None


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def webhook_url(conn: Any) -> str | None:
    """The webhook URL a connection describes (see the module docstring); None without a host or a URL."""
    extra = conn.extra_dejson
    if extra.get("url"):
        return str(extra["url"])
    host = (conn.host or "").strip()
    if not host:
        return None
    schema = (conn.schema or "").strip()
    if "://" in host:
        base = host.rstrip("/")
    else:
        scheme = schema if schema in SCHEMES else conn.conn_type if conn.conn_type in SCHEMES else "https"
        base = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    path = str(extra.get("path") or extra.get("endpoint") or ("" if schema in SCHEMES else schema)).strip("/")
    return f"{base}/{path}" if path else base


def smtp_settings(conn: Any) -> tuple[SmtpServer, str, list[str]]:
    """(server, sender, recipients) of an SMTP connection."""
    extra = conn.extra_dejson
    to = extra.get("to") or []
    recipients = [t.strip() for t in (to.split(",") if isinstance(to, str) else to) if str(t).strip()]
    sender = str(extra.get("from") or extra.get("from_email") or f"stockml@{socket.getfqdn()}")
    ssl = _flag(extra.get("ssl", False))
    server = SmtpServer(
        host=conn.host,
        port=int(conn.port or (465 if ssl else 25)),
        user=conn.login or None,
        password=conn.password or None,
        starttls=_flag(extra.get("starttls", False)),
        ssl=ssl,
        timeout_s=float(extra.get("timeout_s", 10)),
        ca_bundle=ca_bundle(conn),
    )
    return server, sender, recipients


def ca_bundle(conn: Any) -> str | None:
    """The extra's ``ca_bundle`` (a PEM file of the CAs to trust), or None for the system's store."""
    value = conn.extra_dejson.get("ca_bundle")
    return (str(value).strip() or None) if value else None


def _policy(conn: Any) -> tuple[int, float]:
    """(retries, back-off seconds) from the connection's extra."""
    extra = conn.extra_dejson
    return int(extra.get("retries", 3)), float(extra.get("backoff_s", 2.0))


def notify(alert: Alert) -> list[dict[str, Any]]:
    """Send ``alert`` on every configured channel; the deliveries (``Delivery.as_dict``), one per channel."""
    deliveries: list[Delivery] = []
    hook = _connection(WEBHOOK_CONN_ID)
    if hook is not None:
        url = webhook_url(hook)
        if url is None:
            deliveries.append(Delivery("webhook", WEBHOOK_CONN_ID, False, 0, None, "the connection has no host or url"))
        else:
            body = json.dumps(alert.webhook_payload()).encode()
            timeout = float(hook.extra_dejson.get("timeout_s", 10))
            retries, backoff = _policy(hook)
            target = redacted(url)  # the target is logged and recorded: a webhook's path is its secret
            deliveries.append(
                post_json(
                    url, body, target=target, timeout_s=timeout, retries=retries, backoff_s=backoff,
                    ca_bundle=ca_bundle(hook),
                )
            )  # fmt: skip
    smtp = _connection(SMTP_CONN_ID)
    if smtp is not None:
        server, sender, recipients = smtp_settings(smtp)
        if not server.host or not recipients:
            why = "the connection has no host" if not server.host else 'the connection\'s extra has no "to"'
            deliveries.append(Delivery("email", SMTP_CONN_ID, False, 0, None, why))
        else:
            retries, backoff = _policy(smtp)
            deliveries.append(send_email(alert.email(sender, recipients), server, retries=retries, backoff_s=backoff))
    if hook is None and smtp is None:
        log.warning("alert %r not sent: no alert channel is configured; %s", alert.title, HOW_TO)
    for d in deliveries:
        if d.ok:
            log.info("alert %s sent by %s to %s (%d attempt(s))", alert.kind, d.channel, d.target, d.attempts)
        else:
            log.error(
                "alert %s NOT sent by %s to %s after %d attempt(s): %s",
                alert.kind,
                d.channel,
                d.target,
                d.attempts,
                d.error,
            )
    return [d.as_dict() for d in deliveries]


def failure_alert(context: dict[str, Any]) -> Alert:
    """The ``dag_failed`` alert of a failed task instance: dag, task, run, logical date, try, error, log URL."""
    ti = context.get("ti") or context.get("task_instance")
    logical = context.get("logical_date")
    figures = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "try_number": getattr(ti, "try_number", None),
        "error": str(context.get("exception"))[:2000],
    }
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # a log URL needs the API's base_url setting; the alert does not
        log_url = None
    return Alert(
        kind="dag_failed",
        title=f"stockml: {figures['dag_id']}.{figures['task_id']} failed",
        text=dag_failed_text(figures),
        severity="critical",
        figures=figures,
        links={"task log": log_url} if log_url else {},
    )


def is_refusal(decision: dict[str, Any]) -> bool:
    """Whether a promotion decision is the guardrail's refusal (not "already champion", nor a first champion)."""
    return not decision["promoted"] and decision.get("candidate_score") is not None


def refused_alert(decision: dict[str, Any], tracking_uri: str | None = None) -> Alert:
    """The ``promotion_refused`` alert of a guardrail refusal (a :class:`PromotionDecision` as a dict)."""
    keep = ("name", "candidate", "previous_champion", "candidate_score", "champion_score", "tolerance", "actor", "at")
    links = {}
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        links["candidate in MLflow"] = (
            f"{tracking_uri.rstrip('/')}/#/models/{decision['name']}/versions/{decision['candidate']}"
        )
    return Alert(
        kind="promotion_refused",
        title=f"stockml: promotion of {decision['name']} v{decision['candidate']} refused",
        text=promotion_refused_text(decision),
        severity="warning",
        figures={k: decision.get(k) for k in keep} | {"reason": decision.get("reason")},
        links=links,
    )


def alert_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: send the ``dag_failed`` alert. A callback must never raise."""
    try:
        notify(failure_alert(context))
    except Exception:
        log.exception("could not send the dag_failed alert")


class AlertsNotDelivered(RuntimeError):
    """Every channel failed for every alert: nobody was told (the task fails, so Airflow retries it)."""


def notify_all(
    alerts: list[dict[str, Any]], record: Callable[[list[dict[str, Any]]], object] | None = None
) -> list[dict[str, Any]]:
    """Send each alert (the fields of :class:`Alert`, as an XCom carries them); every delivery, each with
    its alert's kind, severity, title and ``alert_id`` (:meth:`Alert.fingerprint`). ``record`` is given
    every delivery, failed ones included, before anything is raised (``stock_monitoring`` writes them as
    rows, :mod:`stockml.steps.alert_deliveries`); if it fails that is logged, not raised, since a retry of
    the task would send again what did arrive. Raises :class:`AlertsNotDelivered` when channels are
    configured but not one delivery succeeded: a retry then cannot send anything twice. A partial failure
    is logged (ERROR) and returned, not raised: a retry would repeat what did arrive."""
    out: list[dict[str, Any]] = []
    for fields in alerts:
        alert = Alert.from_dict(fields)
        about = {"kind": alert.kind, "severity": alert.severity, "title": alert.title, "alert_id": alert.fingerprint()}
        out += [d | about for d in notify(alert)]
    if record is not None and out:
        try:
            record(out)
        except Exception:
            log.exception("the %d alert deliveries were sent but could not be recorded", len(out))
    if out and not any(d["ok"] for d in out):
        failed = "; ".join(f"{d['channel']} to {d['target']}: {d['error']}" for d in out)
        raise AlertsNotDelivered(f"no alert reached anyone ({failed})")
    return out
