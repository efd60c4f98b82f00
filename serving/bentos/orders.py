"""Order recommendation: a periodic-review base-stock (order-up-to) policy on the router's forecast.

Every ``R`` weeks (the review period) an order is placed; it arrives ``L`` weeks later (the lead
time). The order must cover demand until the *next* order arrives, i.e. over ``L + R`` weeks:

- expected demand ``D = sum(yhat_t, t = 1 .. L+R)`` (the forecast's first ``L+R`` weekly steps);
- the weekly forecast error ``sigma_t`` comes from the upper half of the router's 80 % interval,
  ``sigma_t = (hi80_t - yhat_t) / z(0.90)`` (the upper half: the lower bound is clipped at 0 for
  sparse series, the upper one is where stock-outs come from); when the 80 % band is missing the
  95 % band is used, ``(hi95_t - yhat_t) / z(0.975)``;
- weekly errors are treated as independent: ``sigma_LR = sqrt(sum(sigma_t^2))``;
- safety stock ``SS = z(service_level) * sigma_LR`` with ``z`` the standard normal quantile
  (``service_level`` is the cycle service level: the probability of no stock-out in a cycle);
- order-up-to level ``S = D + SS``; inventory position ``IP = on_hand + on_order``;
- order quantity ``q = max(0, S - IP)``, rounded up to whole units, and raised to
  ``min_order_qty`` when positive and below it.

Optional costs: ``order_value = q * unit_cost``; ``holding_cost_per_week`` is the expected cost of
carrying the average inventory (safety stock plus half the review period's demand),
``(SS + D_R / 2) * unit_cost * holding_cost_rate / 52`` with ``holding_cost_rate`` per year.

The policy is pure (no I/O), so the reinforcement-learning agent can replace it behind the same
``/recommend_order`` contract later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

POLICY = "base-stock"
Z80_UPPER = NormalDist().inv_cdf(0.90)  # the 80 % band's upper bound is the 90th percentile
Z95_UPPER = NormalDist().inv_cdf(0.975)
WEEKS_PER_YEAR = 52.0


@dataclass(frozen=True)
class OrderInput:
    on_hand: float
    lead_time_weeks: int
    on_order: float = 0.0
    review_period_weeks: int = 1
    service_level: float = 0.95
    unit_cost: float | None = None
    holding_cost_rate: float | None = None  # per year, as a fraction of unit cost
    min_order_qty: float | None = None
    unit_price: float | None = None  # with unit_cost: the margin a lost sale costs (the RL agent's penalty)


@dataclass(frozen=True)
class OrderRecommendation:
    order_qty: float
    order_up_to: float
    safety_stock: float
    expected_demand: float
    inventory_position: float
    sigma: float  # standard deviation of demand over lead time + review period
    z: float
    weeks_covered: int
    policy: str = POLICY
    order_value: float | None = None
    holding_cost_per_week: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def z_score(service_level: float) -> float:
    if not 0.0 < service_level < 1.0:
        raise ValueError(f"service_level must be in (0, 1), got {service_level}")
    return NormalDist().inv_cdf(service_level)


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def weekly_sigma(yhat: float, hi80: float | None, hi95: float | None) -> float:
    """Standard deviation of one week's demand from the forecast interval (0 when none is usable)."""
    hi80, hi95 = _finite(hi80), _finite(hi95)
    if hi80 is not None:
        return max(0.0, hi80 - yhat) / Z80_UPPER
    if hi95 is not None:
        return max(0.0, hi95 - yhat) / Z95_UPPER
    return 0.0


def recommend(points: Sequence[dict], order: OrderInput) -> OrderRecommendation:
    """The base-stock recommendation from forecast ``points`` (dicts with yhat, hi80, hi95 per week, step order)."""
    if order.lead_time_weeks < 0 or order.review_period_weeks < 1:
        raise ValueError("lead_time_weeks must be >= 0 and review_period_weeks >= 1")
    weeks = order.lead_time_weeks + order.review_period_weeks
    if len(points) < weeks:
        raise ValueError(f"{len(points)} forecast week(s) given; lead time + review period need {weeks}")
    use = points[:weeks]
    yhat = [max(0.0, _finite(p.get("yhat")) or 0.0) for p in use]
    sig = [weekly_sigma(y, p.get("hi80"), p.get("hi95")) for y, p in zip(yhat, use, strict=True)]
    demand = math.fsum(yhat)
    sigma = math.sqrt(math.fsum(s * s for s in sig))
    z = z_score(order.service_level)
    safety = max(0.0, z * sigma)  # a service level below 50 % would give negative safety stock: floor at 0
    up_to = demand + safety
    position = order.on_hand + order.on_order
    qty = max(0.0, up_to - position)
    qty = float(math.ceil(qty - 1e-9)) if qty > 0 else 0.0
    if qty > 0 and order.min_order_qty and qty < order.min_order_qty:
        qty = float(order.min_order_qty)
    value = qty * order.unit_cost if order.unit_cost is not None else None
    holding = None
    if order.unit_cost is not None and order.holding_cost_rate is not None:
        review_demand = math.fsum(yhat[order.lead_time_weeks :])
        holding = (safety + review_demand / 2.0) * order.unit_cost * order.holding_cost_rate / WEEKS_PER_YEAR
    return OrderRecommendation(
        order_qty=qty,
        order_up_to=up_to,
        safety_stock=safety,
        expected_demand=demand,
        inventory_position=position,
        sigma=sigma,
        z=z,
        weeks_covered=weeks,
        order_value=value,
        holding_cost_per_week=holding,
    )
