"""The agent's observation and action scaling, shared by the environments and the agent.

Everything is divided by the product's mean demand per period ``mu``: a product selling 2 a week and one
selling 2,000 then look alike to the network, which is what lets one policy serve a whole catalogue and
products it was not trained on. Cost parameters enter as dimensionless ratios (the critical ratio
``p / (p + h)``, the fixed cost over ``h * mu``), demand shape as its coefficient of variation and share
of zero weeks, and the forecast made at the decision (from the periods before it) as the mean per period
over the next ``L + R`` periods and the width of the next period's 80 % bound above that mean, both over
``mu`` (:func:`forecast_inputs` is the one definition, used by the service on the router's forecast; the
training weeks get the same from :func:`training.forecasting.rolling.rolling_forecasts`). Without a
forecast the two are 1 and ``Z80 * cv``. Values are clipped so that a rare huge backlog cannot saturate
the network.

The action is one number ``a`` in [-1, 1], an order-up-to target on the inventory position,
``target = S0 * r ** a``: ``S0`` is the product's tuned base-stock level where the catalogue tuned one,
else its critical-fractile base-stock level (see :class:`DemandProfile`), and ``r`` the agent's
``target_range`` (4 by default: a quarter to four times ``S0``; the specialist agents of the published
instances use 2, a finer resolution near a level that is already right); the order is
``max(target - IP, 0)``. Any order up to ``r * S0`` is reachable (the target may depend on the whole
state, so this is not a base-stock restriction); ``a = 0`` is a sensible order-up-to level for every
product, so learning starts near a decent policy instead of at an arbitrary quantity; and the
exponential scale gives the same relative resolution to a product selling 2 and one selling 2,000, and
room for the high targets of seasonal peaks that the forecast announces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from rl_agent.dp import lead_time_demand, poisson_pmf
from rl_agent.dynamics import BatchParams, BatchState, InventorySpec

MAX_LEAD = 8
OBS_NAMES: tuple[str, ...] = (
    "on_hand",
    *(f"pipeline_{k}" for k in range(MAX_LEAD)),
    "position",
    "lead_time",
    "review_period",
    "review_now",
    "critical_ratio",
    "fixed_cost",
    "demand_cv",
    "zero_share",
    "min_order",
    "forecast_mean",
    "forecast_width",
    "lost_sales",
    "base_level",
)
OBS_DIM = len(OBS_NAMES)
CLIP = 20.0
TARGET_RANGE = 4.0  # default: the target spans [1/4, 4] x the centre level (an agent may set its own)
Z80 = 0.8416  # one-sided 80 % normal quantile: the fallback forecast width is Z80 * cv


@dataclass(frozen=True)
class DemandProfile:
    """A product's demand in a few numbers (from its training history): what the features normalise by.

    ``base_level`` is the critical-fractile order-up-to level (the quantile ``p / (p + h)`` of demand over
    ``L + R`` periods) over ``mu * (L + R + 1)``: the tail of the demand in the units the action uses.
    The action is scaled around it, so ``a = 0`` starts the agent at the analytic base-stock level.
    """

    mean: float
    cv: float
    zero_share: float
    base_level: float = 1.0

    @classmethod
    def of(cls, demand: np.ndarray, spec: InventorySpec | None = None) -> DemandProfile:
        demand = np.asarray(demand, dtype=float).ravel()
        if demand.size == 0 or not np.isfinite(demand).all() or (demand < 0).any():
            raise ValueError("demand history must be a non-empty array of finite values >= 0")
        mean = max(float(demand.mean()), 1e-3)
        level = 1.0
        if spec is not None:
            width = spec.lead_time + spec.review_period
            level = _level_ratio(fractile_level(window_sums(demand[None, :], width), spec), mean, width)
        return cls(mean, float(demand.std() / mean), float((demand == 0).mean()), level)

    @classmethod
    def poisson(cls, mean: float, spec: InventorySpec | None = None) -> DemandProfile:
        level = 1.0
        if spec is not None:
            width = spec.lead_time + spec.review_period
            total = lead_time_demand(poisson_pmf(mean), width)
            fractile = spec.costs.penalty / max(spec.costs.penalty + spec.costs.holding, 1e-12)
            level = _level_ratio(float(np.searchsorted(np.cumsum(total), fractile - 1e-12)), mean, width)
        return cls(float(mean), float(1 / np.sqrt(mean)), float(np.exp(-mean)), level)

    def anchored(self, level: float, spec: InventorySpec) -> DemandProfile:
        """The same profile with the action scale centred on ``level`` (units of inventory position).

        The catalogue centres each product on its *tuned* base-stock level (see
        :func:`rl_agent.catalogue.anchor_on_tuned`): the critical fractile of the historical demand is a
        poor centre for seasonal and lumpy products, where the level that simulates best on the
        product's own paths can be far from it, and the agent then spends its range getting back there.
        """
        width = spec.lead_time + spec.review_period
        return replace(self, base_level=_level_ratio(float(level), self.mean, width))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _level_ratio(level: float, mean: float, width: int) -> float:
    # At least one period's mean demand, so a product whose quantile is 0 can still be ordered for.
    return max(level, mean) / (mean * (width + 1))


def window_sums(demand: np.ndarray, width: int) -> np.ndarray:
    """All sums of ``width`` consecutive periods of every path (rows of ``demand``)."""
    demand = np.asarray(demand, dtype=float)
    width = max(int(width), 1)
    cums = np.concatenate([np.zeros((demand.shape[0], 1)), np.cumsum(demand, axis=1)], axis=1)
    return (cums[:, width:] - cums[:, :-width]).ravel()


def fractile_level(sums: np.ndarray, spec: InventorySpec) -> float:
    """The smallest observed sum whose empirical CDF reaches the critical ratio ``p / (p + h)``."""
    fractile = spec.costs.penalty / max(spec.costs.penalty + spec.costs.holding, 1e-12)
    ordered = np.sort(np.asarray(sums, dtype=float))
    if len(ordered) == 0:
        return 0.0
    index = min(math.ceil(fractile * len(ordered) - 1e-9) - 1, len(ordered) - 1)
    return float(ordered[max(index, 0)])


def forecast_inputs(
    yhat: Sequence[float], hi80_next: float | None, lead_time: int, review_period: int = 1
) -> tuple[float | None, float | None]:
    """The observation's two forecast inputs from a forecast's weekly points made now (next week first):
    the mean of ``yhat`` over the next ``L + R`` weeks (fewer if the forecast is shorter; negatives
    floored at 0) and the next week's 80 % bound ``hi80_next`` (None where unknown: the observation then
    uses the no-forecast width). (None, None) without points."""
    given = [float(v) for v in list(yhat)[: max(lead_time + review_period, 1)] if v is not None]
    points = [max(v, 0.0) for v in given if math.isfinite(v)]
    if not points:
        return None, None
    mean = sum(points) / len(points)
    if hi80_next is None or not math.isfinite(float(hi80_next)):
        return mean, None
    return mean, max(float(hi80_next), mean)


def profile_arrays(profiles: list[DemandProfile]) -> dict[str, np.ndarray]:
    keys = ("mean", "cv", "zero_share", "base_level")
    return {k: np.array([getattr(p, k) for p in profiles], dtype=float) for k in keys}


def observe(
    state: BatchState,
    params: BatchParams,
    profile: dict[str, np.ndarray],
    forecast_mean: np.ndarray | None = None,
    forecast_upper: np.ndarray | None = None,
) -> np.ndarray:
    """The normalised observation of every row, shape (rows, OBS_DIM), float32."""
    mu = profile["mean"]
    n = params.n
    obs = np.zeros((n, OBS_DIM), dtype=np.float64)
    obs[:, 0] = state.on_hand / mu
    width = min(state.pipeline.shape[1], MAX_LEAD)
    obs[:, 1 : 1 + width] = state.pipeline[:, :width] / mu[:, None]
    horizon = params.lead + params.review
    obs[:, 9] = state.position / (mu * (horizon + 1))
    obs[:, 10] = params.lead / MAX_LEAD
    obs[:, 11] = params.review / 4.0
    obs[:, 12] = state.period % params.review == 0
    obs[:, 13] = params.penalty / np.maximum(params.penalty + params.holding, 1e-12)
    obs[:, 14] = np.log1p(params.fixed / np.maximum(params.holding * mu, 1e-12))
    obs[:, 15] = profile["cv"]
    obs[:, 16] = profile["zero_share"]
    obs[:, 17] = np.log1p(params.moq / mu)
    obs[:, 18] = 1.0 if forecast_mean is None else forecast_mean / mu
    if forecast_upper is None or forecast_mean is None:
        obs[:, 19] = Z80 * profile["cv"]
    else:
        obs[:, 19] = np.maximum(forecast_upper - forecast_mean, 0.0) / mu
    obs[:, 20] = params.lost_sales
    obs[:, 21] = profile["base_level"]
    return np.clip(obs, -CLIP, CLIP).astype(np.float32)


def target_from_action(
    action: np.ndarray, params: BatchParams, profile: dict[str, np.ndarray], target_range: float = TARGET_RANGE
) -> np.ndarray:
    """Order-up-to target on the inventory position for an action in [-1, 1]: the centre level times
    ``target_range ** a``."""
    a = np.clip(np.asarray(action, dtype=float).reshape(params.n), -1.0, 1.0)
    return profile["mean"] * profile["base_level"] * (params.lead + params.review + 1) * np.power(target_range, a)


def order_from_action(
    action: np.ndarray,
    state: BatchState,
    params: BatchParams,
    profile: dict[str, np.ndarray],
    target_range: float = TARGET_RANGE,
) -> np.ndarray:
    return np.maximum(target_from_action(action, params, profile, target_range) - state.position, 0.0)
