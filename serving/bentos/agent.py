"""The order agent the service answers with: ``models:/stockml-rl-agent@champion``, checked again every ``ttl_s``.

The registered version's folder holds the agent (``policy.pt`` + ``agent.json``) and ``classical.json``
(the tuned classical parameters per SKU: the agent's action is centred on the SKU's tuned base-stock
level, as in training) and ``pattern_policy.json``: for each demand pattern, the policy that had the
lowest held-out cost when the agent was trained (the agent, or the best tuned classical policy).
``/recommend_order`` with ``policy="auto"`` asks the agent only for the patterns it won; for the others,
and when no champion exists (the guardrail refused every version, or none was trained), the base-stock
policy answers and the response says why. A failed registry read keeps the previous agent (logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from serving.bentos.orders import OrderInput
from serving.bentos.source_lookup import TtlLookup
from stockml.settings import Settings

log = logging.getLogger("stockml.serving")

AGENT_TTL_S = 300.0


@dataclass(frozen=True)
class ServedAgent:
    """The champion agent, its version and the policy its training chose per demand pattern."""

    agent: object | None = None  # rl_agent.agent.RLAgent (imported lazily: torch loads only when used)
    version: str | None = None
    pattern_policy: dict[str, str] = field(default_factory=dict)
    levels: dict[str, float] = field(default_factory=dict)  # sku -> tuned base-stock level (the action's centre)

    def answers_for(self, pattern: str) -> tuple[bool, str]:
        """(whether the agent answers for this demand pattern, why or why not)."""
        if self.agent is None:
            return False, "no stockml-rl-agent champion: the base-stock policy answers"
        chosen = self.pattern_policy.get(pattern)
        if chosen == "rl":
            return True, f"stockml-rl-agent v{self.version}: lowest held-out cost for {pattern} products"
        if chosen is None:
            return False, f"the agent was not evaluated on {pattern} products: the base-stock policy answers"
        return False, (
            f"for {pattern} products {chosen} had a lower held-out cost than the agent: the base-stock "
            "policy answers (the tuned per-SKU policies are in stock_orders)"
        )


def load_agent_folder(folder: Path, version: str) -> ServedAgent:
    from rl_agent.agent import RLAgent

    manifest = next(Path(folder).rglob("agent.json"), None)
    if manifest is None:
        raise FileNotFoundError(f"stockml-rl-agent v{version} has no agent.json")
    policy = manifest.parent / "pattern_policy.json"
    patterns = json.loads(policy.read_text()) if policy.exists() else {}
    return ServedAgent(RLAgent.load(manifest.parent), version, patterns, tuned_levels(manifest.parent))


def tuned_levels(folder: Path) -> dict[str, float]:
    """Each SKU's tuned base-stock level from the registered ``classical.json``: training centred the agent's
    action on it (:func:`rl_agent.catalogue.anchor_on_tuned`), so serving must too; an SKU the catalogue did
    not tune falls back to its critical-fractile level, as an unseen product would."""
    from rl_agent.catalogue import ANCHOR_POLICY

    path = Path(folder) / "classical.json"
    if not path.exists():
        return {}
    tuned = json.loads(path.read_text())
    return {
        str(sku): float(by[ANCHOR_POLICY]["level"]) for sku, by in tuned.items() if "level" in by.get(ANCHOR_POLICY, {})
    }


def registry_loader(settings: Settings) -> Callable[[], ServedAgent]:
    """Read the champion version of ``stockml-rl-agent`` from the settings' MLflow registry."""

    def load() -> ServedAgent:
        import tempfile

        import mlflow
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from training.registry.names import RL_AGENT_MODEL

        mlflow.set_registry_uri(settings.tracking_uri)
        client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        try:
            mv = client.get_model_version_by_alias(RL_AGENT_MODEL, "champion")
        except MlflowException:
            return ServedAgent()
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{RL_AGENT_MODEL}/{mv.version}", dst_path=tmp, tracking_uri=settings.tracking_uri
            )
            served = load_agent_folder(Path(local), str(mv.version))
        log.info("loaded %s v%s for /recommend_order", RL_AGENT_MODEL, mv.version)
        return served

    return load


class AgentLookup(TtlLookup[ServedAgent]):
    what = "the stockml-rl-agent champion"

    def __init__(self, load: Callable[[], ServedAgent], ttl_s: float = AGENT_TTL_S) -> None:
        super().__init__(load, ServedAgent(), ttl_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentLookup:
        return cls(registry_loader(settings))


@dataclass(frozen=True)
class PolicyChoice:
    """Which policy answers one order item, why, its order (the agent's; None: base-stock's own) and cost."""

    policy: str  # "rl" or "base-stock"
    reason: str
    order_qty: float | None
    expected_cost_per_period: float | None


def choose_policy(
    requested: str,
    served: ServedAgent,
    pattern: str,
    order: OrderInput,
    order_up_to: float,
    history: list[float] | None,
    settings: Settings,
    sku: str | None = None,
    forecast: Sequence[dict] | None = None,
) -> PolicyChoice:
    """The agent where it won for the SKU's demand pattern and the item has what it needs, else base-stock.

    ``forecast`` is the router's forecast for the item (weekly points with ``yhat`` and ``hi80``, next
    week first): the agent observes its mean over the next ``L + R`` weeks and next week's 80 % bound,
    as it did in training (:func:`rl_agent.features.forecast_inputs`).

    The expected cost of either is simulated the same way (:func:`rl_agent.advice.expected_cost`), so the
    two figures compare; it needs the unit cost and price (the lost-sales penalty is the margin)."""
    from rl_agent.advice import ProductTerms, agent_advice, base_stock_advice
    from rl_agent.features import MAX_LEAD, forecast_inputs

    terms = None
    missing_terms = "the agent needs unit_cost and unit_price (a margin > 0): send them or publish products"
    cost, price = order.unit_cost, order.unit_price
    if cost is not None and price is not None and price > cost > 0 and order.lead_time_weeks <= MAX_LEAD:
        terms = ProductTerms(
            unit_cost=cost,
            unit_price=price,
            lead_time=order.lead_time_weeks,
            min_order_qty=order.min_order_qty or 0.0,
            review_period=order.review_period_weeks,
            holding_rate_per_year=order.holding_cost_rate or settings.holding_rate_per_year,
            penalty_per_unit=settings.shortage_cost_per_unit,
            mode=settings.rl_mode,
        )
    elif cost is not None and price is not None and price > cost > 0:
        missing_terms = f"the agent orders for lead times up to {MAX_LEAD} weeks"
    demand = history or []
    on_order = order.on_order or 0.0

    def base_stock(reason: str) -> PolicyChoice:
        expected = None
        if terms is not None and sum(demand) > 0:
            expected = base_stock_advice(order_up_to, demand, order.on_hand, terms, on_order).expected_cost_per_period
        return PolicyChoice("base-stock", reason, None, expected)

    if requested == "base-stock":
        return base_stock("asked for: the base-stock policy on the forecast")
    answers, why = served.answers_for(pattern)
    if not answers:
        return base_stock(why)
    if terms is None:
        return base_stock(f"{missing_terms}; the base-stock policy answers")
    level = served.levels.get(sku) if sku is not None else None
    points = list(forecast or [])
    fmean, fupper = forecast_inputs(
        [p.get("yhat") for p in points], points[0].get("hi80") if points else None,
        order.lead_time_weeks, order.review_period_weeks,
    )  # fmt: skip
    advice = agent_advice(
        served.agent, demand, order.on_hand, terms, on_order, level, forecast_mean=fmean, forecast_upper=fupper
    )
    return PolicyChoice("rl", why, advice.order_qty, advice.expected_cost_per_period)
