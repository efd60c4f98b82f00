"""The compiled tuner kernel is the same simulation as :func:`rl_agent.simulate.simulate`.

Why this test exists: the kernel restates the dynamics of :mod:`rl_agent.dynamics` for speed, so every
rule it restates (order timing, lead times 0 and > 1, MOQ, maximum order, review periods, lost sales
versus backorders, fixed and purchase costs, warm-up) is compared here with the numpy reference, on
products that differ in every parameter at once."""

from __future__ import annotations

import numpy as np
import pytest

from rl_agent.classical_kernel import mean_costs
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec
from rl_agent.simulate import simulate
from rl_agent.tuning import FAMILIES

SPECS = [
    InventorySpec(CostConfig(1.0, 4.0), lead_time=0),
    InventorySpec(CostConfig(0.5, 9.0, fixed_order=20.0), lead_time=3, mode="backorder"),
    InventorySpec(CostConfig(0.2, 2.5, purchase=1.5), lead_time=1, min_order_qty=6, max_order_qty=30),
    InventorySpec(CostConfig(1.3, 7.0, fixed_order=5.0), lead_time=6, review_period=2),
    InventorySpec(CostConfig(0.8, 3.0), lead_time=2, mode="backorder", review_period=3, min_order_qty=4),
]


def _reference(family: str, values: np.ndarray, product: np.ndarray, demand: np.ndarray, start, warmup):
    paths = demand.shape[1]
    rows = np.repeat(product, paths)
    params = BatchParams.from_specs([SPECS[i] for i in rows])
    policy = FAMILIES[family].build(np.repeat(values, paths, axis=0))
    flat = demand[rows, np.tile(np.arange(paths), len(product))]
    state = BatchState.start(params, start[rows])
    result = simulate(policy, params, flat, state, warmup=warmup)
    return result.cost_per_period.reshape(len(product), paths).mean(axis=1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_kernel_costs_equal_the_numpy_simulation(family):
    rng = np.random.default_rng(7)
    demand = rng.poisson(rng.uniform(0.5, 12.0, (len(SPECS), 1, 1)), (len(SPECS), 6, 90)).astype(float)
    demand[1, :, ::4] *= 3.0  # lumpy weeks
    start = np.array([0.0, 15.0, 4.0, 30.0, 2.0])
    product = np.repeat(np.arange(len(SPECS)), 9)
    first = rng.integers(0, 60, len(product)).astype(float)
    second = rng.integers(1, 25, len(product)).astype(float)
    values = np.column_stack([first, second]) if len(FAMILIES[family].names) == 2 else first[:, None]
    params = BatchParams.from_specs(SPECS)
    for warmup in (0, 11):
        reference = _reference(family, values, product, demand, start, warmup)
        for threads in (1, 3):  # one thread, and the candidates split unevenly over three
            kernel = mean_costs(family, params, demand, start, values, product, warmup, threads)
            np.testing.assert_allclose(kernel, reference, rtol=1e-12, atol=1e-12)


def test_kernel_rejects_shapes_that_do_not_fit():
    params = BatchParams.from_specs(SPECS[:2])
    with pytest.raises(ValueError, match="demand must be"):
        mean_costs("base_stock", params, np.zeros((3, 2, 10)), np.zeros(2), np.ones((1, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="unknown policy family"):
        mean_costs("kanban", params, np.zeros((2, 2, 10)), np.zeros(2), np.ones((1, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="product row"):
        mean_costs("base_stock", params, np.zeros((2, 2, 10)), np.zeros(2), np.ones((1, 1)), np.array([2]))
