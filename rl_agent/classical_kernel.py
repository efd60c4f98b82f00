"""The classical policies' simulated cost, compiled: the tuner's hot loop in one numba kernel.

Why a second implementation of the dynamics: tuning scores every product's candidate parameters on
every training path (a 3,000-product catalogue is about 2 x 10^6 simulated rows of 100+ weeks per
family). Through :func:`rl_agent.simulate.simulate` each week is a dozen numpy passes over those rows
plus the per-row parameter arrays and the tiled demand, and py-spy showed the tuner spending 81 % of
the orders step in that weekly step and 16 % in ``np.tile``. This kernel runs the same rules
(:func:`rl_agent.dynamics.step`, the policies of :mod:`rl_agent.policies`) row by row in compiled
code, reads each product's paths in place (no tiling) and keeps only the cost sums. It is checked equal
to :func:`rl_agent.simulate.simulate` by ``tests/unit/rl_agent/test_classical_kernel.py``, which is
what keeps the two from drifting; :mod:`rl_agent.dynamics` stays the one definition every other
consumer (the environments, the evaluation) steps through.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from rl_agent.dynamics import BatchParams

# The policy families the kernel knows, by code (the tuner's ``FAMILIES`` names).
FAMILY_CODES = {"base_stock": 0, "capped_base_stock": 1, "s_S": 2}


@numba.njit(cache=True, nogil=True)
def _mean_costs(
    family: int,
    values: np.ndarray,  # (candidates, 2): level/cap, or reorder point/gap
    product: np.ndarray,  # (candidates,): the product each candidate belongs to
    demand: np.ndarray,  # (products, paths, periods)
    start: np.ndarray,  # (products,): on hand at period 0
    lead: np.ndarray,
    review: np.ndarray,
    moq: np.ndarray,
    max_order: np.ndarray,
    holding: np.ndarray,
    penalty: np.ndarray,
    fixed: np.ndarray,
    purchase: np.ndarray,
    lost_sales: np.ndarray,
    warmup: int,
) -> np.ndarray:
    n_paths, periods = demand.shape[1], demand.shape[2]
    width = max(lead.max(), 1)
    out = np.empty(values.shape[0])
    # The open orders as a ring: the order placed at ``t`` with lead ``L >= 1`` sits in slot
    # ``(t + L - 1) % width`` and joins the stock at the end of period ``t + L - 1`` (the start of
    # ``t + L``), as column ``L - 1`` of dynamics' left-aligned pipeline does; ``on_order`` is their sum.
    ring = np.zeros(width)
    for c in range(values.shape[0]):
        i = product[c]
        a, b = values[c, 0], values[c, 1]
        total = 0.0
        for path in range(n_paths):
            on_hand = start[i]
            on_order = 0.0
            ring[:] = 0.0
            for t in range(periods):
                position = on_hand + on_order
                if family == 0:
                    wanted = max(a - position, 0.0)
                elif family == 1:
                    wanted = min(max(a - position, 0.0), b)
                elif position <= a:
                    wanted = max(a + b - position, 0.0)
                else:
                    wanted = 0.0
                q = max(np.rint(wanted), 0.0)
                if q > 0.0 and q < moq[i]:
                    q = moq[i]
                q = min(q, max_order[i])
                if t % review[i] != 0:
                    q = 0.0
                if lead[i] == 0:
                    on_hand += q
                else:
                    ring[(t + lead[i] - 1) % width] += q
                    on_order += q
                d = demand[i, path, t]
                served = min(max(on_hand, 0.0), d)
                if lost_sales[i]:
                    end = on_hand - served
                    shortage = d - served
                else:
                    end = on_hand - d
                    shortage = max(-end, 0.0)
                if t >= warmup:
                    cost = holding[i] * max(end, 0.0) + penalty[i] * shortage + purchase[i] * q
                    if q > 0.0:
                        cost += fixed[i]
                    total += cost
                slot = t % width
                on_hand = end + ring[slot]
                on_order -= ring[slot]
                ring[slot] = 0.0
        out[c] = total / (n_paths * (periods - warmup))
    return out


def mean_costs(
    family: str,
    params: BatchParams,
    demand: np.ndarray,
    start: np.ndarray,
    values: np.ndarray,
    product: np.ndarray,
    warmup: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """Mean cost per scored period, over each product's paths, of every candidate.

    ``params`` has one row per *product*; ``demand`` is ``(products, paths, periods)``; ``start`` the
    on-hand stock per product at period 0; ``values`` one row of policy parameters per candidate
    (``base_stock``: level; ``capped_base_stock``: level, cap; ``s_S``: reorder point, gap ``S - s``)
    and ``product`` the product row it belongs to. Equal to ``simulate(...).cost_per_period`` averaged
    over the paths. The candidates are split over ``threads`` threads (default: the CPUs this process
    may use); the kernel releases the GIL, so they run in parallel without worker processes."""
    if family not in FAMILY_CODES:
        raise ValueError(f"unknown policy family {family!r}; known: {sorted(FAMILY_CODES)}")
    demand = np.ascontiguousarray(demand, dtype=float)
    if demand.ndim != 3 or demand.shape[0] != params.n:
        raise ValueError(f"demand must be (products={params.n}, paths, periods), got {demand.shape}")
    if not 0 <= warmup < demand.shape[2]:
        raise ValueError(f"warmup must be in [0, periods), got {warmup!r} for {demand.shape[2]} periods")
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] not in (1, 2):
        raise ValueError(f"values must be (candidates, 1 or 2), got {values.shape}")
    if values.shape[1] == 1:
        values = np.column_stack([values[:, 0], np.zeros(len(values))])
    values = np.ascontiguousarray(values)
    product = np.asarray(product, dtype=np.int64)
    if len(product) != len(values) or (len(product) and (product.min() < 0 or product.max() >= params.n)):
        raise ValueError("product must give, per candidate, a product row of params")
    fixed_args = (
        demand,
        np.asarray(start, dtype=float),
        params.lead.astype(np.int64),
        params.review.astype(np.int64),
        params.moq.astype(float),
        params.max_order.astype(float),
        params.holding.astype(float),
        params.penalty.astype(float),
        params.fixed.astype(float),
        params.purchase.astype(float),
        params.lost_sales.astype(np.bool_),
        int(warmup),
    )
    code = FAMILY_CODES[family]
    threads = max(1, min(threads or len(os.sched_getaffinity(0)), len(values)))
    if threads == 1:
        return _mean_costs(code, values, product, *fixed_args)
    bounds = np.linspace(0, len(values), threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(
            lambda lo_hi: _mean_costs(code, values[lo_hi[0] : lo_hi[1]], product[lo_hi[0] : lo_hi[1]], *fixed_args),
            itertools.pairwise(bounds),
        )
        return np.concatenate(list(parts))
