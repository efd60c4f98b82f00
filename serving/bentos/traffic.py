"""Champion/challenger traffic by Thompson sampling, fed by ``/feedback``, and the bandit's decisions.

Routing is **per request**: one posterior draw per arm picks the model for the whole request, so
the response's ``model_version`` (top level and per item) names the model that served every SKU in
it, one ``predict`` call serves the request and the per-version cache keeps working. Every served
SKU forecast (cached ones included) is recorded in the :class:`~serving.bentos.outcomes.OutcomeStore`
under its ``forecast_id``.

After each ``/feedback`` the rule of :func:`serving.bentos.bandit.decide` is evaluated for the
loaded (champion, challenger) pair:

- **promote**: :func:`training.registry.mlflow_registry.promote` with ``force=False`` and
  ``who="bandit"``: the holdout guardrails must agree. When they do, ``bandit.*`` tags with the
  evidence go on the new champion's version and the service reloads its aliases. When they refuse
  (or promotion fails), that is recorded and not retried until the challenger has another
  ``min_outcomes`` outcomes.
- **stop**: the challenger gets no more traffic (share 0) for as long as this pair is loaded; recorded
  (and tagged ``bandit.stopped*`` on the challenger's version). A new challenger or champion starts afresh.

Knobs: the ``bandit`` section of :class:`stockml.settings.Settings` (``STOCKML_BANDIT__MIN_OUTCOMES``
200, ``STOCKML_BANDIT__MIN_STOP_OUTCOMES`` min/4, ``STOCKML_BANDIT__P_PROMOTE`` 0.95,
``STOCKML_BANDIT__P_STOP`` 0.05) and the guardrail's ``STOCKML_PROMOTION_TOLERANCE``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitoring.serving_health import FAILED, PROMOTE, REFUSED, STOP
from serving.bentos.bandit import Posterior, choose, decide, mase_scale, traffic_shares
from serving.bentos.outcomes import OutcomeStore, ScoredItem, ServedForecast
from serving.bentos.schemas import MAX_HORIZON, MAX_ITEMS, Observation, unique_by
from stockml.settings_serving import BanditSettings
from training.data.weekly import week_number, week_start_of

log = logging.getLogger("stockml.serving.bandit")


# ---------------------------------------------------------------- /feedback request


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forecast_id: Annotated[str, Field(min_length=1, max_length=64, description="From the /forecast answer.")]
    actuals: Annotated[
        list[Observation],
        Field(
            min_length=1,
            max_length=MAX_HORIZON * 7,
            description="Actual demand; dated within a forecast week (several in one week are summed: send a "
            "week's total in one call, a later actual for an already scored week is not counted).",
        ),
    ]


FeedbackItems = Annotated[
    list[FeedbackItem],
    Field(min_length=1, max_length=MAX_ITEMS, description="1..1000 items, each forecast_id at most once."),
]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: FeedbackItems

    @field_validator("items")
    @classmethod
    def _unique(cls, v: list[FeedbackItem]) -> list[FeedbackItem]:
        return unique_by(v, "forecast_id")


# ---------------------------------------------------------------- controller


@dataclass(frozen=True)
class BanditConfig:
    min_outcomes: int = 200
    min_stop_outcomes: int | None = None
    p_promote: float = 0.95
    p_stop: float = 0.05
    tolerance: float = 0.0

    @classmethod
    def from_settings(cls, bandit: BanditSettings, tolerance: float = 0.0) -> BanditConfig:
        """From the ``bandit`` settings section and the promotion guardrail's tolerance."""
        return cls(bandit.min_outcomes, bandit.min_stop_outcomes, bandit.p_promote, bandit.p_stop, tolerance)


class Bandit:
    """Routes requests between the loaded champion and challenger and acts on the evidence."""

    def __init__(self, store: OutcomeStore, models: Any, config: BanditConfig, seed: int | None = None) -> None:
        self.store = store
        self.models = models  # serving.bentos.models.ModelWatcher
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._decide_lock = threading.Lock()

    # ------------------------------------------------------------ routing

    def _pair(self) -> tuple[Any, Any | None]:
        champ, chall = self.models.get("champion"), self.models.get("challenger")
        if chall is not None and champ is not None and chall.version == champ.version:
            chall = None
        return champ, chall

    def stopped(self, champion: str, challenger: str) -> bool:
        return any(d["action"] == STOP for d in self.store.decisions(self.models.name, champion, challenger))

    def routing_reads_store(self) -> bool:
        """Whether :meth:`route` reads the outcome store (a challenger is loaded); without one it is a
        couple of attribute reads and can run on the event loop."""
        return self._pair()[1] is not None

    def route(self) -> tuple[Any, str]:
        """(the LoadedModel that serves this request, its alias); the champion when there is no challenger."""
        champ, chall = self._pair()
        if champ is None or chall is None:
            return champ, "champion"
        post = self.store.posteriors(self.models.name)
        stopped = self.stopped(champ.version, chall.version)
        with self._rng_lock:
            arm = choose(post.get(champ.version, Posterior()), post.get(chall.version, Posterior()), self._rng, stopped)
        return (chall, "challenger") if arm == "challenger" else (champ, "champion")

    # ------------------------------------------------------------ state and decisions

    def state(self) -> dict[str, Any]:
        champ, chall = self._pair()
        post = self.store.posteriors(self.models.name)
        out: dict[str, Any] = {
            "model": self.models.name,
            "routing": "per request (Thompson sampling)",
            "champion": champ.version if champ else None,
            "challenger": chall.version if chall else None,
            "posteriors": {
                v: p.as_dict() for v, p in sorted(post.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
            },
            "p_challenger_better": None,
            "traffic_shares": traffic_shares(None),
            "stopped": False,
            "config": {
                "min_outcomes": self.config.min_outcomes,
                "min_stop_outcomes": self.config.min_stop_outcomes,
                "p_promote": self.config.p_promote,
                "p_stop": self.config.p_stop,
                "promotion_tolerance": self.config.tolerance,
            },
            "decisions": self.store.decisions(self.models.name)[-20:],
        }
        if champ is not None and chall is not None:
            d = self._decide(post, champ.version, chall.version)
            stopped = self.stopped(champ.version, chall.version)
            out.update(
                p_challenger_better=d.p_better,
                traffic_shares=traffic_shares(d.p_better, stopped),
                stopped=stopped,
                rule=d.action,
                rule_reason=d.reason,
            )
        return out

    def _decide(self, post: dict[str, Posterior], champion: str, challenger: str):
        c = self.config
        return decide(
            post.get(champion, Posterior()),
            post.get(challenger, Posterior()),
            c.min_outcomes,
            c.p_promote,
            c.p_stop,
            c.min_stop_outcomes,
        )

    def evaluate(self) -> dict[str, Any] | None:
        """Apply the decision rule to the loaded pair; returns what was done (None: nothing to do)."""
        if not self._decide_lock.acquire(blocking=False):
            return None  # another request is deciding (e.g. promoting) right now
        try:
            return self._evaluate()
        finally:
            self._decide_lock.release()

    def _evaluate(self) -> dict[str, Any] | None:
        champ, chall = self._pair()
        if champ is None or chall is None:
            return None
        name, hv, cv = self.models.name, champ.version, chall.version
        post = self.store.posteriors(name)
        ph, pc = post.get(hv, Posterior()), post.get(cv, Posterior())
        d = self._decide(post, hv, cv)
        past = self.store.decisions(name, hv, cv)
        evidence = {
            "p_better": d.p_better,
            "champion": {"version": hv, **ph.as_dict()},
            "challenger": {"version": cv, **pc.as_dict()},
            "reason": d.reason,
        }
        if d.action == STOP:
            if any(p["action"] == STOP for p in past):
                return None
            self.store.record_decision(name, hv, cv, STOP, d.p_better, pc.n, evidence=evidence)
            self._tag(name, cv, "stopped", evidence)
            log.warning("bandit: challenger v%s gets no more traffic: %s", cv, d.reason)
            return {"action": STOP, **evidence}
        if d.action != PROMOTE:
            return None
        attempts = [p for p in past if p["action"] in (REFUSED, FAILED)]
        if attempts and pc.n < attempts[-1]["challenger_n"] + self.config.min_outcomes:
            return None  # refused before: wait for another min_outcomes outcomes
        from training.registry.mlflow_registry import promote

        try:
            decision = promote(name, cv, tolerance=self.config.tolerance, force=False, who="bandit")
        except Exception as exc:
            log.exception("bandit: promoting v%s failed", cv)
            self.store.record_decision(name, hv, cv, FAILED, d.p_better, pc.n, error=str(exc), evidence=evidence)
            return {"action": FAILED, "error": str(exc), **evidence}
        guard = {"promoted": decision.promoted, "reason": decision.reason}
        if not decision.promoted:
            self.store.record_decision(name, hv, cv, REFUSED, d.p_better, pc.n, guardrail=guard, evidence=evidence)
            log.warning("bandit: guardrails refused v%s: %s", cv, decision.reason)
            return {"action": REFUSED, "guardrail": guard, **evidence}
        self._tag(name, cv, "promoted", evidence)
        self.store.record_decision(name, hv, cv, PROMOTE, d.p_better, pc.n, guardrail=guard, evidence=evidence)
        log.warning("bandit: promoted v%s over v%s: %s", cv, hv, d.reason)
        try:
            reload = self.models.refresh()
        except Exception as exc:  # the poll will pick it up
            reload = {"error": str(exc)}
        return {"action": PROMOTE, "guardrail": guard, "reload": reload, **evidence}

    def _tag(self, name: str, version: str, decision: str, evidence: dict[str, Any]) -> None:
        from mlflow import MlflowClient

        champ, chall = evidence["champion"], evidence["challenger"]
        tags = {
            "bandit.decision": decision,
            "bandit.p_challenger_better": f"{evidence['p_better']:.4f}",
            "bandit.n": str(chall["n"]),
            "bandit.posterior": f"Beta({chall['alpha']:.3f}, {chall['beta']:.3f})",
            "bandit.champion_version": str(champ["version"]),
            "bandit.champion_posterior": f"Beta({champ['alpha']:.3f}, {champ['beta']:.3f})",
            "bandit.champion_n": str(champ["n"]),
            "bandit.min_outcomes": str(self.config.min_outcomes),
            "bandit.at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            client = MlflowClient()
            for k, v in tags.items():
                client.set_model_version_tag(name, str(version), k, v)
        except Exception:  # evidence tags must not undo a decision already taken; the DB has the evidence too
            log.exception("bandit: tagging %s v%s failed", name, version)


# ---------------------------------------------------------------- helpers for the service


def weekly_values(observations: list[Observation]) -> dict[str, float]:
    """{ISO Monday: summed y} for observations (the W-MON grid the router forecasts on)."""
    out: dict[str, float] = {}
    for o in observations:
        key = week_start_of(o.ds).isoformat()
        out[key] = out.get(key, 0.0) + float(o.y)
    return out


def history_scale(history: list[Observation]) -> float:
    """MASE scale of a request history on the weekly grid (missing weeks are zero, as the router sees it):
    :func:`serving.bentos.bandit.mase_scale` of the weekly totals, weeks numbered as the library does."""
    weeks: dict[int, float] = {}
    for o in history:
        w = week_number(o.ds)
        weeks[w] = weeks.get(w, 0.0) + float(o.y)
    first, last = min(weeks), max(weeks)
    y = np.zeros(last - first + 1)
    y[np.fromiter(weeks.keys(), dtype=np.int64, count=len(weeks)) - first] = np.fromiter(weeks.values(), float)
    return mase_scale(y)


def record_served(store: OutcomeStore, model: Any, alias: str, items: list[Any], out: list[Any], horizon: int) -> None:
    """Record every served SKU forecast (cached ones too) under its forecast_id; a store failure is logged,
    not turned into a failed forecast (those forecast_ids then get 'unknown' from /feedback).

    The rows go through the store's write-behind queue (:meth:`OutcomeStore.enqueue_forecasts`): no
    database round trip on the request path."""
    history = {i.sku: i.history for i in items}
    try:
        store.enqueue_forecasts(
            ServedForecast(
                forecast_id=o.forecast_id,
                sku=o.sku,
                model_name=model.name,
                model_version=model.version,
                alias=alias,
                horizon=horizon,
                scale=history_scale(history[o.sku]),
                points={p.ds.isoformat(): p.yhat for p in o.forecasts},
                cached=o.cached,
            )
            for o in out
        )
    except Exception:
        log.exception("recording %d served forecast(s) in the outcome store failed", len(out))


def feedback_items(items: list[FeedbackItem]) -> list[tuple[str, list[tuple[str, float]]]]:
    return [(i.forecast_id, sorted(weekly_values(i.actuals).items())) for i in items]


def scored_json(scored: list[ScoredItem]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(items, errors) of the /feedback answer."""
    items, errors = [], []
    for k, s in enumerate(scored):
        if s.error:
            errors.append(
                {"index": k, "field": f"items[{k}].forecast_id", "forecast_id": s.forecast_id, "error": s.error}
            )
            continue
        items.append(
            {
                "forecast_id": s.forecast_id,
                "model_version": s.model_version,
                "reward": s.reward,
                "counted": s.counted,
                "duplicates": s.duplicates,
                "points": s.points,
            }
        )
    return items, errors
