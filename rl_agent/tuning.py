"""Tune the classical policies per product by simulation on training demand paths.

Every candidate runs on the same paths (common random numbers) in one batched simulation, so the
comparison between candidates is not swamped by demand noise. The search is an integer grid around an
analytic start (the critical-fractile base-stock level of the empirical demand over ``L + R`` periods),
coarse first where the levels are large, then refined with unit steps around the coarse winner.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rl_agent.dynamics import BatchParams, BatchState, InventorySpec
from rl_agent.policies import BaseStock, CappedBaseStock, MinMax, Policy
from rl_agent.simulate import simulate


@dataclass
class Tuned:
    """A tuned policy, its parameters and its mean cost per period on the training paths."""

    policy: Policy
    parameters: dict[str, float]
    train_cost: float


def window_sums(demand: np.ndarray, width: int) -> np.ndarray:
    """All sums of ``width`` consecutive periods of every path."""
    demand = np.asarray(demand, dtype=float)
    width = max(int(width), 1)
    cums = np.concatenate([np.zeros((demand.shape[0], 1)), np.cumsum(demand, axis=1)], axis=1)
    return (cums[:, width:] - cums[:, :-width]).ravel()


def analytic_level(spec: InventorySpec, demand: np.ndarray) -> int:
    """The critical-fractile order-up-to level ``S`` with ``P(D_{L+R} <= S) >= p / (p + h)``, from the
    empirical demand over ``L + R`` periods (exact for backorders with ``R = 1``, a start otherwise)."""
    fractile = spec.costs.penalty / max(spec.costs.penalty + spec.costs.holding, 1e-12)
    sums = np.sort(window_sums(demand, spec.lead_time + spec.review_period))
    if len(sums) == 0:
        return 0
    index = min(int(math.ceil(fractile * len(sums) - 1e-9)) - 1, len(sums) - 1)
    return int(sums[max(index, 0)])


def _grid(center: float, below: float, above: float, points: int = 15) -> tuple[np.ndarray, int]:
    lo, hi = max(0.0, center - below), center + above
    step = max(1, int(math.ceil((hi - lo) / (points - 1))))
    return np.unique(np.arange(math.floor(lo), math.ceil(hi) + step, step).astype(float)), step


def _search(
    spec: InventorySpec,
    demand: np.ndarray,
    candidates: list[tuple[float, ...]],
    make: Callable[[np.ndarray], Policy],
    start_on_hand: float,
    warmup: int,
) -> tuple[tuple[float, ...], float]:
    """Mean cost per period of every candidate on the same paths; returns the best and its cost."""
    paths = demand.shape[0]
    k = len(candidates)
    params = BatchParams.repeat(spec, paths * k)
    values = np.repeat(np.asarray(candidates, dtype=float), paths, axis=0)  # rows: candidate-major
    result = simulate(
        make(values),
        params,
        np.tile(demand, (k, 1)),
        BatchState.start(params, start_on_hand),
        warmup=warmup,
    )
    costs = result.cost_per_period.reshape(k, paths).mean(axis=1)
    best = int(np.argmin(costs))
    return candidates[best], float(costs[best])


def _refine(grids: list[tuple[np.ndarray, int]], best: tuple[float, ...]) -> list[tuple[float, ...]]:
    axes = []
    for (_, step), value in zip(grids, best, strict=True):
        span = np.arange(-step, step + 1) if step > 1 else np.arange(-1, 2)
        axes.append(np.unique(np.maximum(value + span, 0.0)))
    return list(itertools.product(*axes))


def _two_stage(
    spec: InventorySpec,
    demand: np.ndarray,
    grids: list[tuple[np.ndarray, int]],
    make: Callable[[np.ndarray], Policy],
    valid: Callable[[tuple[float, ...]], bool],
    start_on_hand: float,
    warmup: int,
) -> tuple[tuple[float, ...], float]:
    coarse = [c for c in itertools.product(*(g for g, _ in grids)) if valid(c)]
    best, cost = _search(spec, demand, coarse, make, start_on_hand, warmup)
    fine = [c for c in _refine(grids, best) if valid(c)]
    best_fine, cost_fine = _search(spec, demand, fine, make, start_on_hand, warmup)
    return (best_fine, cost_fine) if cost_fine <= cost else (best, cost)


def _spread(spec: InventorySpec, demand: np.ndarray, start: int) -> float:
    per_period = float(np.mean(demand)) * spec.review_period
    return max(4.0, 0.6 * start, 3.0 * per_period)


def tune_base_stock(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Order-up-to level ``S`` minimising the mean cost on the paths."""
    start = analytic_level(spec, demand)
    spread = _spread(spec, demand, start)
    grids = [_grid(start, spread, spread, 25)]
    (level,), cost = _two_stage(
        spec, demand, grids, lambda v: BaseStock(v[:, 0]), lambda c: True, start, warmup
    )
    return Tuned(BaseStock(level), {"level": level}, cost)


def tune_capped_base_stock(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Level ``S`` and cap ``r`` of the capped base-stock policy (the cap near the mean demand per
    review period; an uncapped candidate is included so the result is never worse than base-stock on
    the paths)."""
    start = analytic_level(spec, demand)
    spread = _spread(spec, demand, start)
    per_period = max(float(np.mean(demand)) * spec.review_period, 1.0)
    levels = _grid(start, spread, 1.5 * spread, 15)
    caps = _grid(1.6 * per_period, 0.9 * per_period, 2.4 * per_period, 12)
    caps = (np.unique(np.append(caps[0], levels[0].max() + spread)), caps[1])
    (level, cap), cost = _two_stage(
        spec,
        demand,
        [levels, caps],
        lambda v: CappedBaseStock(v[:, 0], v[:, 1]),
        lambda c: c[1] >= 1,
        start,
        warmup,
    )
    return Tuned(CappedBaseStock(level, cap), {"level": level, "cap": cap}, cost)


def tune_s_S(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Reorder point ``s`` and order-up-to level ``S >= s`` (with ``S = s + 1`` it is base-stock)."""
    start = analytic_level(spec, demand)
    spread = _spread(spec, demand, start)
    per_period = max(float(np.mean(demand)) * spec.review_period, 1.0)
    points = _grid(start, spread, spread, 15)
    gaps = (np.unique(np.concatenate([[1.0], np.rint(per_period * np.array([0.5, 1, 1.5, 2, 3, 4, 6]))])), 1)
    (reorder, gap), cost = _two_stage(
        spec,
        demand,
        [points, gaps],
        lambda v: MinMax(v[:, 0], v[:, 0] + v[:, 1]),
        lambda c: c[1] >= 1,
        start,
        warmup,
    )
    return Tuned(MinMax(reorder, reorder + gap), {"s": reorder, "S": reorder + gap}, cost)


TUNERS: dict[str, Callable[[InventorySpec, np.ndarray, int], Tuned]] = {
    "base_stock": tune_base_stock,
    "capped_base_stock": tune_capped_base_stock,
    "s_S": tune_s_S,
}
