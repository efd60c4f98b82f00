"""The DP optimum against the closed form (backorders) and the published lost-sales optimum."""

from __future__ import annotations

import numpy as np
import pytest

from rl_agent import dp
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec
from rl_agent.policies import DPPolicy
from rl_agent.simulate import mean_ci95, simulate


@pytest.mark.parametrize(("mean", "lead", "h", "b"), [(3.0, 0, 1, 4), (5.0, 1, 1, 9), (2.0, 2, 2, 3)])
def test_dp_matches_the_base_stock_closed_form_for_backorders(mean, lead, h, b):
    pmf, costs = dp.poisson_pmf(mean), CostConfig(h, b)
    result = dp.solve(pmf, costs, lead, "backorder")
    level = dp.base_stock_level(pmf, lead, costs)
    assert result.converged
    assert result.gain == pytest.approx(dp.base_stock_cost(pmf, lead, costs, level), rel=1e-4)
    # The optimal order is "up to the level": from on-hand 0 and an empty pipeline, order S*.
    assert result.order(0, (0,) * max(lead - 1, 0)) == level


def test_analytic_level_is_the_cost_minimiser():
    pmf, costs = dp.poisson_pmf(4.0), CostConfig(1, 7)
    level = dp.base_stock_level(pmf, 2, costs)
    cost = [dp.base_stock_cost(pmf, 2, costs, s) for s in range(40)]
    assert int(np.argmin(cost)) == level
    # The critical fractile itself: P(D_3 <= S*) >= 7/8 > P(D_3 <= S* - 1).
    cdf = np.cumsum(dp.lead_time_demand(pmf, 3))
    assert cdf[level] >= 7 / 8 > cdf[level - 1]


@pytest.mark.parametrize(("lead", "published"), [(1, 4.04), (2, 4.40), (4, 4.73)])
def test_dp_reproduces_zipkin_lost_sales_optimum(lead, published):
    # Zipkin (2008), Poisson mean 5, h = 1, p = 4: the optimal average cost per period.
    result = dp.solve(dp.poisson_pmf(5.0), CostConfig(1, 4), lead, "lost_sales")
    assert result.converged
    assert result.gain == pytest.approx(published, rel=0.005)


def test_simulated_dp_policy_costs_its_gain():
    spec = InventorySpec(CostConfig(1, 4), lead_time=2)
    result = dp.solve(dp.poisson_pmf(5.0), spec.costs, 2, "lost_sales")
    demand = np.random.default_rng(3).poisson(5.0, (16, 3000)).astype(float)
    params = BatchParams.repeat(spec, 16)
    sim = simulate(DPPolicy(result, 2), params, demand, BatchState.start(params, 10), warmup=50)
    _, lo, hi = mean_ci95(sim.cost_per_period)
    assert lo <= result.gain <= hi


def test_dp_rejects_long_lead_times():
    with pytest.raises(ValueError, match="lead times"):
        dp.solve(dp.poisson_pmf(5.0), CostConfig(1, 4), 5)
