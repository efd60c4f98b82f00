"""The inventory dynamics by hand-computed cases: timing, conservation, each cost term, both modes."""

from __future__ import annotations

import numpy as np
import pytest

from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec, step


def run(spec: InventorySpec, on_hand: float, orders: list[float], demand: list[float], pipeline=()):
    params = BatchParams.from_specs([spec])
    state = BatchState.start(params, on_hand)
    state.pipeline[0, : len(pipeline)] = pipeline
    outcomes, states = [], []
    for q, d in zip(orders, demand, strict=True):
        state, out = step(params, state, np.array([q]), np.array([d]))
        outcomes.append(out)
        states.append(state.copy())
    return outcomes, states


def test_lost_sales_order_arrives_after_lead_time_then_demand():
    # L = 2: the order placed in period 0 is on hand at the start of period 2, before period 2's demand.
    spec = InventorySpec(CostConfig(holding=1, penalty=4), lead_time=2)
    outs, states = run(spec, on_hand=3, orders=[10, 0, 0], demand=[2, 4, 5])
    assert [o.end_stock[0] for o in outs] == [1, 0, 5]
    assert [o.shortage[0] for o in outs] == [0, 3, 0]  # period 1: 1 on hand, demand 4, 3 lost
    assert [o.holding_cost[0] for o in outs] == [1, 0, 5]
    assert [o.shortage_cost[0] for o in outs] == [0, 12, 0]
    assert states[0].pipeline[0, 0] == 10 and states[1].on_hand[0] == 10  # arrives at the start of period 2


def test_zero_lead_time_order_arrives_before_demand():
    spec = InventorySpec(CostConfig(holding=1, penalty=4), lead_time=0)
    outs, _ = run(spec, on_hand=0, orders=[5], demand=[3])
    assert outs[0].served[0] == 3 and outs[0].end_stock[0] == 2 and outs[0].shortage[0] == 0


def test_stock_is_conserved():
    # start + received - sold = end, every period; lost demand never enters the books.
    spec = InventorySpec(CostConfig(1, 4), lead_time=3)
    rng = np.random.default_rng(0)
    orders, demand = rng.integers(0, 9, 40).tolist(), rng.poisson(4, 40).tolist()
    outs, states = run(spec, on_hand=6, orders=orders, demand=demand)
    received = sum(orders) - states[-1].pipeline.sum()
    sold = sum(o.served[0] for o in outs)
    assert states[-1].on_hand[0] == pytest.approx(6 + received - sold)
    assert all(o.served[0] + o.shortage[0] == o.demand[0] for o in outs)


def test_backorder_carries_the_backlog_and_charges_it_every_period():
    spec = InventorySpec(CostConfig(holding=2, penalty=5), lead_time=1, mode="backorder")
    outs, states = run(spec, on_hand=2, orders=[0, 10, 0], demand=[5, 1, 1])
    assert [o.end_stock[0] for o in outs] == [-3, -4, 5]
    assert [o.shortage_cost[0] for o in outs] == [15, 20, 0]  # 3 then 4 units backlogged at the period's end
    assert [o.served[0] for o in outs] == [2, 0, 1]  # only stock on hand serves demand at once
    assert outs[2].holding_cost[0] == 10
    assert states[-1].on_hand[0] == 5


def test_fixed_and_purchase_costs_per_order():
    spec = InventorySpec(CostConfig(holding=0, penalty=0, fixed_order=50, purchase=3), lead_time=1)
    outs, _ = run(spec, on_hand=0, orders=[4, 0], demand=[0, 0])
    assert outs[0].fixed_cost[0] == 50 and outs[0].purchase_cost[0] == 12
    assert outs[1].fixed_cost[0] == 0 and outs[1].cost[0] == 0


def test_min_order_quantity_raises_small_orders_and_cap_limits_big_ones():
    spec = InventorySpec(CostConfig(1, 1), lead_time=1, min_order_qty=10, max_order_qty=25)
    outs, _ = run(spec, on_hand=0, orders=[3, 0, 40, 2.4], demand=[0, 0, 0, 0])
    assert [o.order[0] for o in outs] == [10, 0, 25, 10]


def test_orders_only_in_review_periods():
    spec = InventorySpec(CostConfig(1, 1), lead_time=1, review_period=3)
    outs, _ = run(spec, on_hand=0, orders=[5] * 7, demand=[0] * 7)
    assert [o.order[0] for o in outs] == [5, 0, 0, 5, 0, 0, 5]


def test_rows_with_different_lead_times_step_together():
    specs = [InventorySpec(CostConfig(1, 1), lead_time=lead) for lead in (0, 1, 3)]
    params = BatchParams.from_specs(specs)
    state = BatchState.start(params)
    arrivals = []
    for t in range(4):
        state, _ = step(params, state, np.array([7.0, 7.0, 7.0]) * (t == 0), np.zeros(3))
        arrivals.append(state.on_hand.copy())
    # Seen at the start of the next period: L=0 at once, L=1 at period 1, L=3 at period 3.
    assert [a.tolist() for a in arrivals] == [[7, 7, 0], [7, 7, 0], [7, 7, 7], [7, 7, 7]]


@pytest.mark.parametrize(
    "kwargs",
    [{"lead_time": -1}, {"review_period": 0}, {"mode": "both"}, {"min_order_qty": 5, "max_order_qty": 4}],
)
def test_bad_specs_get_clear_errors(kwargs):
    with pytest.raises(ValueError):
        InventorySpec(CostConfig(1, 1), **kwargs)


def test_costs_from_product_data():
    costs = CostConfig.from_product(unit_cost=52.0, unit_price=80.0, holding_rate_per_year=0.25)
    assert costs.holding == pytest.approx(0.25) and costs.penalty == pytest.approx(28.0)
    with pytest.raises(ValueError):
        CostConfig(holding=-1, penalty=1)
