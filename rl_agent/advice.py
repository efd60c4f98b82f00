"""One product's order from the trained agent, from what a service request carries.

The catalogue API (:mod:`rl_agent.catalogue`) recommends for the products it was built from. A
service answers for whatever history, stock and costs a request brings, so this module builds the
same per-product problem from those plain values (:func:`product_spec`, the catalogue's rule for
costs and order limits) and asks the agent for one order. The demand profile that normalises the observation
comes from the history, as in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_agent.agent import RLAgent
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec, Mode, feasible_order
from rl_agent.features import MAX_LEAD, DemandProfile
from rl_agent.policies import BaseStock, Policy, Situation
from rl_agent.simulate import simulate

EXPECTED_WEEKS = 26
EXPECTED_PATHS = 20


@dataclass(frozen=True)
class ProductTerms:
    """A product's commercial terms: what its costs and order limits are built from."""

    unit_cost: float
    unit_price: float
    lead_time: int
    min_order_qty: float = 0.0
    review_period: int = 1
    holding_rate_per_year: float = 0.25
    penalty_per_unit: float | None = None
    mode: Mode = "lost_sales"


def product_spec(terms: ProductTerms, mean: float) -> InventorySpec:
    """The replenishment problem of one product (orders capped at 20 review periods of ``mean`` demand)."""
    if not 0 <= terms.lead_time <= MAX_LEAD:
        raise ValueError(f"lead time {terms.lead_time} outside 0..{MAX_LEAD} weeks")
    costs = CostConfig.from_product(
        terms.unit_cost, terms.unit_price, terms.holding_rate_per_year, terms.penalty_per_unit
    )
    moq = math.ceil(terms.min_order_qty or 0)
    return InventorySpec(
        costs,
        lead_time=int(terms.lead_time),
        mode=terms.mode,
        review_period=int(terms.review_period),
        min_order_qty=moq,
        max_order_qty=max(moq, math.ceil(20 * mean * terms.review_period) + 1),
    )


@dataclass(frozen=True)
class Advice:
    """An order and what the policy that made it is expected to cost per week from here."""

    order_qty: float
    expected_cost_per_period: float | None
    policy: str


def _has_demand(history: Sequence[float]) -> bool:
    return len(history) > 0 and float(np.sum(history)) > 0


def _problem(
    history: Sequence[float], on_hand: float, terms: ProductTerms, on_order: float, level: float | None = None
):
    demand = np.asarray(history, dtype=float)
    spec = product_spec(terms, max(float(demand.mean()), 1e-3) if demand.size else 1e-3)
    # As in training (rl_agent.catalogue): the centre of the agent's action scale is the SKU's tuned
    # base-stock level where the catalogue tuned one (``level``), else its critical-fractile level.
    profile = DemandProfile.of(demand, spec)
    if level is not None:
        profile = profile.anchored(level, spec)
    params = BatchParams.from_specs([spec])
    state = BatchState.start(params, float(on_hand))
    slots = max(spec.lead_time - 1, 0)
    if slots and on_order > 0:
        state.pipeline[0, :slots] = float(on_order) / slots
    return demand, profile, params, state


def expected_cost(
    policy: Policy,
    params: BatchParams,
    state: BatchState,
    history: np.ndarray,
    forecast_mean: np.ndarray | None = None,
    forecast_upper: np.ndarray | None = None,
    seed: int = 0,
) -> float:
    """Mean cost per week of ``policy`` over the next weeks, from ``state``, on demand resampled from the
    last year of ``history`` (a seeded bootstrap of whole weeks: the demand's own distribution, no model);
    ``forecast_mean`` / ``forecast_upper`` (paths x weeks) are what the policy sees each week, if any."""
    recent = history[-52:]
    rng = np.random.default_rng(seed)
    demand = rng.choice(recent, size=(EXPECTED_PATHS, EXPECTED_WEEKS), replace=True)
    many = BatchParams(**{k: np.repeat(v, EXPECTED_PATHS, axis=0) for k, v in vars(params).items()})
    start = BatchState(
        np.repeat(state.on_hand, EXPECTED_PATHS), np.repeat(state.pipeline, EXPECTED_PATHS, axis=0),
        np.repeat(state.period, EXPECTED_PATHS),
    )  # fmt: skip
    result = simulate(policy, many, demand, start, forecast_mean, forecast_upper)
    return float(result.total_cost.mean() / EXPECTED_WEEKS)


def base_stock_advice(
    level: float, history: Sequence[float], on_hand: float, terms: ProductTerms, on_order: float = 0.0
) -> Advice:
    """What the base-stock policy at ``level`` is expected to cost, on the same simulation as the agent."""
    if not _has_demand(history):
        return Advice(max(0.0, float(level) - on_hand - on_order), None, "base-stock")
    demand, _, params, state = _problem(history, on_hand, terms, on_order)
    policy = BaseStock(float(level))
    qty = float(feasible_order(params, state, policy.order(Situation(state, params)))[0])
    return Advice(qty, expected_cost(policy, params, state, demand), "base-stock")


def agent_advice(
    agent: RLAgent,
    history: Sequence[float],
    on_hand: float,
    terms: ProductTerms,
    on_order: float = 0.0,
    level: float | None = None,
    with_cost: bool = True,
    forecast_mean: float | None = None,
    forecast_upper: float | None = None,
) -> Advice:
    """The agent's order now (whole units, MOQ respected; 0 without demand) and, ``with_cost``, its
    expected cost per week (see :func:`expected_cost`).

    ``level`` is the SKU's tuned base-stock level the agent was centred on in training (None: its
    critical fractile). ``on_order`` (open orders in total) is spread evenly over the ``L - 1``
    periods in transit, as the catalogue does when only the total is known. ``forecast_mean`` /
    ``forecast_upper`` are the forecast made now, as the observation defines them (the mean per week over
    the next ``L + R`` weeks and next week's 80 % bound: :func:`rl_agent.features.forecast_inputs` of the
    router's forecast); None leaves the no-forecast values. The expected cost holds that forecast over
    the simulated weeks (nothing later is known)."""
    if not _has_demand(history):
        return Advice(0.0, None, "rl")
    demand, profile, params, state = _problem(history, on_hand, terms, on_order, level)
    fmean, fupper = (None if v is None else np.array([float(v)]) for v in (forecast_mean, forecast_upper))
    wanted = agent.policy_for([profile]).order(Situation(state, params, fmean, fupper))
    qty = float(feasible_order(params, state, wanted)[0])
    cost = None
    if with_cost:
        held = (None if v is None else np.full((EXPECTED_PATHS, EXPECTED_WEEKS), v[0]) for v in (fmean, fupper))
        cost = expected_cost(agent.policy_for([profile] * EXPECTED_PATHS), params, state, demand, *held)
    return Advice(qty, cost, "rl")
