"""Alerts for ops: what happened, in words and figures, rendered for a chat webhook and for e-mail.

An :class:`Alert` is a plain value (no Airflow, no settings): its ``kind`` says what happened
(:data:`KINDS`), ``text`` says it the way a person on call reads it, with the figures in the sentence
("Drift: 1 of 5 features drifted (level_yoy p=0.0003) on 300 products"), ``figures`` keeps the same
numbers for machines and ``links`` where to look. :meth:`Alert.webhook_payload` is Slack's incoming
webhook JSON (``text`` for notifications and clients without blocks, ``blocks`` for the message);
Mattermost, Rocket.Chat and most chat tools accept the same body. :meth:`Alert.email` is an
:class:`email.message.EmailMessage` with a plain-text body. Sending is :mod:`monitoring.delivery`.

The sentences are built here too (:func:`drift_text`, :func:`degradation_text`, ...), from the
figures the checks produce, so every channel and every caller words an alert the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

KINDS = ("drift", "degradation", "promotion_refused", "promotion_failed", "bandit_promotion", "dag_failed")
SEVERITIES = ("info", "warning", "critical")
_EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
MAX_FIELDS = 10  # Slack allows at most 10 fields in a section block
MAX_TEXT = 2900  # and 3000 characters in a text object


@dataclass(frozen=True)
class Alert:
    """One thing ops should know about. ``figures`` are JSON-able; ``links`` map a label to a URL."""

    kind: str
    title: str
    text: str
    severity: str = "warning"
    figures: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} is not one of {SEVERITIES}")
        if not self.title.strip():
            raise ValueError("an alert needs a title")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def fingerprint(self) -> str:
        """16 hex digits that name this exact alert (all its fields): the same alert sent again (a retried
        or re-run task) has the same one, so what records its deliveries replaces them instead of adding."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The inverse of :meth:`to_dict` (what travels in an XCom); unknown keys are an error."""
        return cls(**dict(data))

    def webhook_payload(self) -> dict[str, Any]:
        """Slack's incoming-webhook body: ``text`` (the fallback line) and ``blocks`` (the message)."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{_EMOJI[self.severity]} {self.text}"[:MAX_TEXT]}},
        ]
        flat = list(flat_figures(self.figures))
        if flat:
            fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]} for k, v in flat[:MAX_FIELDS]]
            blocks.append({"type": "section", "fields": fields})
        context = [f"kind `{self.kind}`", f"severity `{self.severity}`"]
        context += [f"<{url}|{label}>" for label, url in self.links.items()]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
        return {"text": f"[{self.severity}] {self.title}: {self.text}"[:MAX_TEXT], "blocks": blocks}

    def email(self, sender: str, to: Iterable[str]) -> EmailMessage:
        """The alert as a plain-text e-mail from ``sender`` to ``to``."""
        recipients = [t for t in to if t]
        if not recipients:
            raise ValueError("an e-mail alert needs at least one recipient")
        msg = EmailMessage()
        msg["Subject"] = f"[stockml {self.severity}] {self.title}"
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        msg["X-Stockml-Alert-Kind"] = self.kind
        lines = [self.text, ""]
        lines += [f"{k}: {v}" for k, v in flat_figures(self.figures)]
        if self.links:
            lines += ["", *(f"{label}: {url}" for label, url in self.links.items())]
        msg.set_content("\n".join(lines).rstrip() + "\n")
        return msg


def flat_figures(figures: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """``(name, value)`` of the scalar figures, nested mappings as dotted names; lists are summarised."""
    for key, value in figures.items():
        if isinstance(value, Mapping):
            for sub, v in flat_figures(value):
                yield f"{key}.{sub}", v
        elif isinstance(value, list | tuple):
            yield key, ", ".join(_fmt(v) for v in value[:5]) + (f" (+{len(value) - 5})" if len(value) > 5 else "")
        elif value is not None:
            yield key, _fmt(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


# ---------------------------------------------------------------- the sentences


def drift_text(figures: Mapping[str, Any], what: str = "features") -> str:
    """'Drift: 1 of 5 features drifted (level_yoy p=0.0003) on 300 products' from a drift check's figures."""
    columns: Mapping[str, Mapping[str, Any]] = figures.get("columns") or {}
    drifted = list(figures.get("drifted_columns") or [])
    worst = sorted(
        (c for c in drifted if isinstance(columns.get(c, {}).get("p_value"), int | float)),
        key=lambda c: columns[c]["p_value"],
    )
    detail = ", ".join(f"{c} p={columns[c]['p_value']:.2g}" for c in worst[:3])
    n = figures.get("n_current")
    on = f" on {n} products" if what == "features" and n is not None else (f" ({n} errors)" if n else "")
    return f"Drift: {len(drifted)} of {len(columns) or '?'} {what} drifted" + (f" ({detail})" if detail else "") + on


def degradation_text(figures: Mapping[str, Any]) -> str:
    """'Degradation: weekly MASE 2.9, 3.1 above the limit 1.8 (1.2 x backtest 1.5) for 2 weeks (stockml-router/v1)'."""
    recent = [w.get("mase") for w in figures.get("recent") or []]
    mases = ", ".join(f"{m:.3g}" for m in recent if isinstance(m, int | float))
    limit, ratio, base = figures.get("limit"), figures.get("ratio"), figures.get("backtest_mase")
    weeks = figures.get("consecutive_weeks_above", len(recent))
    parts = [f"Degradation: weekly MASE {mases or '?'}"]
    if isinstance(limit, int | float):
        parts.append(f"above the limit {limit:.3g}" + (f" ({ratio:g} x backtest {base:.3g})" if base else ""))
    parts.append(f"for {weeks} week(s)")
    model = figures.get("model_version")
    return " ".join(parts) + (f" ({model})" if model else "")


def bandit_promotion_text(p: Mapping[str, Any]) -> str:
    """'Bandit promotion: stockml-router v3 replaced v2 as champion (P(better) 0.97 after 240 outcomes)'."""
    p_better = p.get("p_better")
    evidence = f"P(better) {p_better:.3g}" if isinstance(p_better, int | float) else "P(better) ?"
    return (
        f"Bandit promotion: {p.get('model_name')} v{p.get('challenger_version')} replaced "
        f"v{p.get('champion_version')} as champion ({evidence} after {p.get('challenger_n')} outcomes)"
    )


def promotion_refused_text(d: Mapping[str, Any]) -> str:
    """'Promotion refused: stockml-router v4 stays challenger, v3 stays champion: holdout MASE ...'."""
    return (
        f"Promotion refused: {d.get('name')} v{d.get('candidate')} was not promoted, "
        f"v{d.get('previous_champion')} stays champion ({d.get('reason')})"
    )


def promotion_failed_text(p: Mapping[str, Any]) -> str:
    """'Promotion failed: the bandit chose stockml-router v3 over v2 (P(better) 0.97 after 240 outcomes) but the
    registry call failed (<error>); v2 stays champion. ...what to do' from a ``promote_failed`` decision."""
    p_better = p.get("p_better")
    evidence = f"P(better) {p_better:.3g}" if isinstance(p_better, int | float) else "P(better) ?"
    error = " ".join(str(p.get("error") or "no error recorded").split())[:500]
    name, version, champion = p.get("model_name"), p.get("challenger_version"), p.get("champion_version")
    return (
        f"Promotion failed: the bandit chose {name} v{version} over v{champion} ({evidence} after "
        f"{p.get('challenger_n')} outcomes) but the registry call failed ({error}); v{champion} stays champion. "
        f"Check that the service reaches the MLflow registry; the bandit asks again after more outcomes, or "
        f"promote it now: stockml promote --name {name} --version {version}"
    )


def dag_failed_text(f: Mapping[str, Any]) -> str:
    """'Task stock_ingest.ingest failed (run manual__..., logical date ..., try 3): <the error>'."""
    return (
        f"Task {f.get('dag_id')}.{f.get('task_id')} failed (run {f.get('run_id')}, logical date "
        f"{f.get('logical_date') or 'none'}, try {f.get('try_number')}): {f.get('error')}"
    )


def residual_drift_text(figures: Mapping[str, Any]) -> str:
    """'Forecast-error drift: the scaled errors of the window moved (p=0.0001; 1200 errors against 3400 before)'."""
    p_value = ((figures.get("columns") or {}).get("error") or {}).get("p_value")
    p = f"p={p_value:.2g}; " if isinstance(p_value, int | float) else ""
    return (
        f"Forecast-error drift: the scaled errors of the window moved ({p}{figures.get('n_current')} errors "
        f"against {figures.get('n_reference')} before)"
    )
