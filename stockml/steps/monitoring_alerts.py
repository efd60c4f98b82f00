"""What a monitored day tells ops, and the rules that tell each thing once.

Split from :mod:`stockml.steps.monitoring` (which runs the checks and writes the verdicts) so that
the alerting rules live in one small place: which flagged reasons and which of the bandit's
decisions become alerts (:func:`build_alerts`), and the two "once, not every run" rules that keep
a re-run of a day from telling ops again: :func:`flagged_on` (the reasons an earlier run of the
day already alerted) and the bandit cursor (:func:`bandit_cursor`: the newest decision of the
service's bandit already alerted, kept in the day's ``summary`` row as ``bandit_alerted_through``).
The wording itself is :mod:`monitoring.alerts`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd

from monitoring import alerts as alerts_lib
from monitoring.serving_health import FAILED, PROMOTE, REFUSED

REASONS = ("drift", "residual_drift", "degradation")
BANDIT_CURSOR = "bandit_alerted_through"  # in the summary row: the newest bandit decision already alerted
ALERTED_ACTIONS = (PROMOTE, REFUSED, FAILED)  # the bandit's decisions that are alerted; a stop is not


def flagged_on(history: pd.DataFrame, when: dt.datetime, deliveries: pd.DataFrame | None = None) -> set[str]:
    """The reasons an earlier run of ``when``'s day flagged and so alerted, less those whose alert reached
    no one: every delivery of it recorded that day (``stock_alert_deliveries``, ``deliveries``) failed.
    A re-run of the day sends those again, once the channel is mended; an alert that reached one channel
    is not repeated (ops have it), nor one without rows (nothing says it failed)."""
    if history.empty:
        return set()
    day = history[(history["cutoff_week"] == when.date().isoformat()) & history["flagged"].astype(bool)]
    return (set(day["check_name"]) & set(REASONS)) - undelivered_reasons(deliveries, when)


def alert_title(reason: str, cutoff: str) -> str:
    """The title of ``reason``'s alert: what names it in the day's delivery rows."""
    return f"stockml: {reason.replace('_', ' ')} on the demand up to {cutoff}"


def undelivered_reasons(deliveries: pd.DataFrame | None, when: dt.datetime) -> set[str]:
    """The reasons whose alert of ``when``'s day has delivery rows and not one of them ok."""
    if deliveries is None or deliveries.empty:
        return set()
    day = deliveries[deliveries["cutoff_week"] == when.date().isoformat()]
    reached = day.groupby("title")["ok"].agg(lambda ok: ok.astype(bool).any())
    failed = set(reached.index[~reached])
    return {r for r in REASONS if any(t.startswith(alert_title(r, "")) for t in failed)}


def _previous_run(history: pd.DataFrame, when: dt.datetime) -> dt.datetime | None:
    if history.empty:
        return None
    at = pd.to_datetime(history["logical_date"], utc=True)
    earlier = at[at < pd.Timestamp(when)]
    return None if earlier.empty else earlier.max().to_pydatetime()


def bandit_cursor(history: pd.DataFrame, when: dt.datetime) -> dt.datetime | None:
    """Alert the bandit's decisions recorded after this: the newest one an earlier run (this day's
    included) already alerted, so a re-run of a day does not alert twice; without one, the previous
    monitored day (what runs before the cursor existed used)."""
    summaries = history[history["check_name"] == "summary"] if not history.empty else history
    marks = []
    for figures in summaries.get("figures", pd.Series(dtype=str)):
        try:
            mark = json.loads(figures or "{}").get(BANDIT_CURSOR)
        except (TypeError, ValueError):
            continue
        if mark:
            marks.append(_utc(mark))
    return max(marks).to_pydatetime() if marks else _previous_run(history, when)


def _utc(value: Any) -> pd.Timestamp:
    """A timestamp in UTC; a naive one (what SQLite gives back for the outcome store's times) is UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def newest_mark(since: dt.datetime | None, created: list[str]) -> str | None:
    """The next cursor: the newest of ``since`` and the ``created_at`` of the decisions alerted now."""
    marks = ([_utc(since)] if since else []) + [_utc(c) for c in created]
    return max(marks).isoformat() if marks else None


def decisions_to_alert(rows: pd.DataFrame, since: dt.datetime | None) -> list[dict[str, Any]]:
    """The bandit's promote, promote_refused and promote_failed decisions (rows of the outcome store's
    ``serving_bandit_decisions``) recorded after ``since`` (all when None), each with its ``action``; a
    refusal with the guardrail's ``reason``, a failure with the registry's ``error``."""
    if rows.empty:
        return []
    rows = rows[rows["action"].isin(ALERTED_ACTIONS)]
    if since is not None:
        created = pd.to_datetime(rows["created_at"], utc=True)
        rows = rows[created > pd.Timestamp(since)]
    keep = ["model_name", "champion_version", "challenger_version", "action", "p_better", "challenger_n", "created_at"]
    # microseconds kept: the newest alerted one becomes the cursor, and a cursor cut to milliseconds would
    # let that same decision through again at the next run
    out = json.loads(rows[keep].to_json(orient="records", date_format="iso", date_unit="us"))
    for record, details in zip(out, rows["details"], strict=True):
        try:
            detail = json.loads(details or "{}")
        except (TypeError, ValueError):
            detail = {}
        if record["action"] == REFUSED:
            record["reason"] = (detail.get("guardrail") or {}).get("reason")
        elif record["action"] == FAILED:
            record["error"] = detail.get("error")
    return out


def build_alerts(
    report: dict[str, Any], promotions: list[dict[str, Any]], links: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """What ops are told, as the fields of :class:`monitoring.alerts.Alert` (kind, title, text, severity,
    figures, links): one alert per flagged reason (``residual_drift`` is a ``drift`` alert about the
    forecast errors; not one an earlier run of the same day alerted: ``alerted_today``) and one per bandit
    decision (:func:`decisions_to_alert`) since the last one alerted."""
    checks = report["checks"]
    links = dict(links or {})
    cutoff = report["demand"]["cutoff_week"]
    alerts = []
    for reason in [r for r in report["reasons"] if r not in report.get("alerted_today", ())]:
        c = checks[reason]
        state = "retraining requested" if reason in report["due"] else "retraining already requested (debounced)"
        if reason == "degradation":
            text = alerts_lib.degradation_text(c)
        elif reason == "residual_drift":
            text = alerts_lib.residual_drift_text(c)
        else:
            text = alerts_lib.drift_text(c)
        figures = {k: v for k, v in c.items() if k not in ("flagged", "columns")}
        if c.get("columns"):  # per column only its p-value: the rest is in the monitoring row
            figures["p_values"] = {k: v.get("p_value") for k, v in c["columns"].items()}
        alert = alerts_lib.Alert(
            kind="degradation" if reason == "degradation" else "drift",
            title=alert_title(reason, cutoff),
            text=f"{text}; {state}",
            severity="warning",
            figures={"check": reason, "retraining": state, **figures},
            links=links,
        )
        alerts.append(alert.to_dict())
    alerts += [bandit_alert(p, links) for p in promotions]
    return alerts


def bandit_alert(p: dict[str, Any], links: dict[str, str]) -> dict[str, Any]:
    """A promotion by the bandit (``bandit_promotion``), one the guardrails refused (``promotion_refused``),
    or one the registry call failed to make (``promotion_failed``: the champion stays, someone must look)."""
    model = f"{p['model_name']} v{p['challenger_version']}"
    if p.get("action") == REFUSED:
        asked = f"the bandit asked, P(better) {p['p_better']:.3g} after {p['challenger_n']} outcomes"
        why = f"{asked}; the guardrails said: {p.get('reason')}"
        decision = {"name": p["model_name"], "candidate": p["challenger_version"],
                    "previous_champion": p["champion_version"], "reason": why}  # fmt: skip
        kind, severity, title = "promotion_refused", "warning", f"stockml: the bandit's promotion of {model} refused"
        text = alerts_lib.promotion_refused_text(decision)
    elif p.get("action") == FAILED:
        kind, severity, title = "promotion_failed", "warning", f"stockml: the bandit's promotion of {model} failed"
        text = alerts_lib.promotion_failed_text(p)
    else:
        kind, severity, title = "bandit_promotion", "info", f"stockml: the bandit promoted {model}"
        text = alerts_lib.bandit_promotion_text(p)
    return alerts_lib.Alert(kind=kind, title=title, text=text, severity=severity, figures=p, links=links).to_dict()
