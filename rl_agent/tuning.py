"""Tune the classical policies per product by simulation on training demand paths.

Every candidate runs on the same paths (common random numbers), so the comparison between candidates
is not swamped by demand noise. The search is an integer grid around an analytic start (the
critical-fractile base-stock level of the empirical demand over ``L + R`` periods), coarse first, then
refined around the coarse winner. Every product's candidates (on grids scaled to its own demand) are
scored in one compiled simulation (:mod:`rl_agent.classical_kernel`, the same rules as
:func:`rl_agent.simulate.simulate`), which is what makes a 10,000-product catalogue take a few minutes
on two cores rather than most of an hour.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rl_agent.classical_kernel import mean_costs
from rl_agent.dynamics import BatchParams, InventorySpec
from rl_agent.features import fractile_level, window_sums
from rl_agent.policies import BaseStock, CappedBaseStock, MinMax, Policy


@dataclass
class Tuned:
    """A tuned policy, its parameters and its mean cost per period on the training paths."""

    policy: Policy
    parameters: dict[str, float]
    train_cost: float


def analytic_level(spec: InventorySpec, demand: np.ndarray) -> int:
    """The critical-fractile order-up-to level ``S`` with ``P(D_{L+R} <= S) >= p / (p + h)``, from the
    empirical demand over ``L + R`` periods (exact for backorders with ``R = 1``, a start otherwise)."""
    return int(fractile_level(window_sums(demand, spec.lead_time + spec.review_period), spec))


@dataclass(frozen=True)
class Family:
    """A policy family: its parameter names, how to build it from a parameter matrix, its coarse grid
    per product (one array of values per parameter) and which candidates are valid."""

    names: tuple[str, ...]
    build: Callable[[np.ndarray], Policy]
    grids: Callable[[float, float], list[np.ndarray]]  # (analytic start, mean demand per review) -> axes
    valid: Callable[[np.ndarray], np.ndarray]


def _axis(lo: float, hi: float, points: int) -> np.ndarray:
    return np.rint(np.linspace(max(lo, 0.0), max(hi, 0.0), points))


def _spread(start: float, per_review: float) -> float:
    return max(4.0, 0.6 * start, 3.0 * per_review)


FAMILIES: dict[str, Family] = {
    "base_stock": Family(
        ("level",),
        lambda v: BaseStock(v[:, 0]),
        lambda s, m: [_axis(s - _spread(s, m), s + _spread(s, m), 25)],
        lambda c: np.ones(len(c), dtype=bool),
    ),
    # The cap near the mean demand per review period; the largest cap is beyond any level, so the family
    # contains plain base-stock and is never worse than it on the training paths.
    "capped_base_stock": Family(
        ("level", "cap"),
        lambda v: CappedBaseStock(v[:, 0], v[:, 1]),
        lambda s, m: [
            _axis(s - _spread(s, m), s + 1.5 * _spread(s, m), 15),
            np.append(_axis(0.7 * m, 4.0 * m, 11), s + 3 * _spread(s, m)),
        ],
        lambda c: c[:, 1] >= 1,
    ),
    # (s, S) as reorder point s and gap S - s (gap 1 is base-stock).
    "s_S": Family(
        ("s", "gap"),
        lambda v: MinMax(v[:, 0], v[:, 0] + v[:, 1]),
        lambda s, m: [
            _axis(s - _spread(s, m), s + _spread(s, m), 15),
            np.concatenate([[1.0], np.rint(m * np.array([0.5, 1, 1.5, 2, 3, 4, 6]))]),
        ],
        lambda c: c[:, 1] >= 1,
    ),
}


def _candidates(axes: list[np.ndarray]) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=float)


def _fine(axes: list[np.ndarray], best: np.ndarray) -> np.ndarray:
    """Seven points per axis around the coarse winner, spanning one coarse step each way (every integer
    there when the step is at most 3)."""
    refined = []
    for axis, value in zip(axes, best, strict=True):
        step = max(float(np.max(np.diff(np.unique(axis)), initial=1.0)), 1.0)
        refined.append(np.maximum(np.rint(value + np.linspace(-step, step, 7)), 0.0))
    return _candidates(refined)


def _score(
    name: str,
    family: Family,
    specs: list[InventorySpec],
    demands: list[np.ndarray],
    candidates: list[np.ndarray],
    starts: list[float],
    warmup: int,
) -> list[np.ndarray]:
    """Mean cost per period of every product's candidates, all products in one compiled simulation
    (:func:`rl_agent.classical_kernel.mean_costs`; invalid candidates cost ``inf``)."""
    sizes = np.array([len(c) for c in candidates])
    values = np.concatenate(candidates)
    product = np.repeat(np.arange(len(specs)), sizes)
    costs = mean_costs(
        name, BatchParams.from_specs(specs), np.stack(demands), np.asarray(starts), values, product, warmup
    )
    costs = np.where(family.valid(values), costs, np.inf)
    return np.split(costs, np.cumsum(sizes)[:-1])


def tune_many(name: str, specs: list[InventorySpec], demands: list[np.ndarray], warmup: int = 0) -> list[Tuned]:
    """Tune policy family ``name`` for every product (``demands[i]``: paths x periods, same shape for all)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown policy {name!r}; known: {sorted(FAMILIES)}")
    if not specs or len(specs) != len(demands):
        raise ValueError("need one demand array per product, and at least one product")
    shapes = {np.shape(d) for d in demands}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every product needs demand paths of the same (paths, periods) shape, got {shapes}")
    family = FAMILIES[name]
    starts = [float(analytic_level(s, d)) for s, d in zip(specs, demands, strict=True)]
    per_review = [max(float(np.mean(d)) * s.review_period, 1.0) for s, d in zip(specs, demands, strict=True)]
    axes = [family.grids(s, m) for s, m in zip(starts, per_review, strict=True)]
    coarse = [_candidates(a) for a in axes]
    coarse_cost = _score(name, family, specs, demands, coarse, starts, warmup)
    best = [c[int(np.argmin(cost))] for c, cost in zip(coarse, coarse_cost, strict=True)]
    fine = [_fine(a, b) for a, b in zip(axes, best, strict=True)]
    fine_cost = _score(name, family, specs, demands, fine, starts, warmup)
    tuned = []
    for c_cand, c_cost, f_cand, f_cost in zip(coarse, coarse_cost, fine, fine_cost, strict=True):
        cand, cost = (f_cand, f_cost) if f_cost.min() <= c_cost.min() else (c_cand, c_cost)
        i = int(np.argmin(cost))
        values = cand[i]
        parameters = dict(zip(family.names, (float(v) for v in values), strict=True))
        if name == "s_S":
            parameters = {"s": parameters["s"], "S": parameters["s"] + parameters["gap"]}
        tuned.append(Tuned(family.build(values[None, :]), parameters, float(cost[i])))
    return tuned


def tune(name: str, spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Tune one product."""
    return tune_many(name, [spec], [np.asarray(demand, dtype=float)], warmup)[0]


def tune_base_stock(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Order-up-to level ``S`` minimising the mean cost on the paths."""
    return tune("base_stock", spec, demand, warmup)


def tune_capped_base_stock(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Level ``S`` and cap ``r`` of the capped base-stock policy."""
    return tune("capped_base_stock", spec, demand, warmup)


def tune_s_S(spec: InventorySpec, demand: np.ndarray, warmup: int = 0) -> Tuned:
    """Reorder point ``s`` and order-up-to level ``S > s``."""
    return tune("s_S", spec, demand, warmup)


TUNERS: dict[str, Callable[[InventorySpec, np.ndarray, int], Tuned]] = {
    "base_stock": tune_base_stock,
    "capped_base_stock": tune_capped_base_stock,
    "s_S": tune_s_S,
}
