"""monitoring.decisions: realised cost, fill rate and stock-outs of recommended orders (hand-computed)."""

from __future__ import annotations

import pandas as pd
import pytest

from monitoring.decisions import decisions_by_policy, realised_decisions

WEEKS = pd.date_range("2026-03-02", periods=4, freq="W-MON")


def _frames():
    orders = pd.DataFrame(
        [
            {"sku": "a", "as_of_week": WEEKS[0], "policy": "base_stock", "expected_cost_per_period": 1.0},
            {"sku": "b", "as_of_week": WEEKS[0], "policy": "rl_agent", "expected_cost_per_period": 2.0},
            {"sku": "c", "as_of_week": WEEKS[0], "policy": None, "expected_cost_per_period": None},
        ]
    )
    demand = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 4, "ds": list(WEEKS) * 2, "y": [9.0, 10, 10, 4, 5, 5, 5, 5]}
    )
    inventory = pd.DataFrame(
        {
            "unique_id": ["a"] * 4 + ["b"] * 4,
            "ds": list(WEEKS) * 2,
            "on_hand": [50.0, 20, 10, 0, 10, 10, 10, 10],
            "censored": [False, False, False, True] + [False] * 4,
        }
    )
    # holding = unit_cost * 0.26 / 52 = 0.005 * unit_cost; penalty = price - cost
    products = pd.DataFrame(
        {"sku": ["a", "b", "c"], "unit_cost": [100.0, 200.0, 1.0], "unit_price": [130.0, 250.0, 2.0],
         "lead_time_weeks": [1, 1, 1]}
    )  # fmt: skip
    return orders, demand, inventory, products


def test_realised_cost_fill_rate_and_stockouts_per_sku():
    r = realised_decisions(*_frames(), holding_rate_per_year=0.26).set_index("sku")
    assert set(r.index) == {"a", "b"}  # c has no policy
    a = r.loc["a"]
    # the weeks after as_of_week: 10, 10, 4 sold; the last censored: typical 10 -> 6 lost
    assert a["weeks"] == 3 and a["sold"] == 24 and a["lost"] == pytest.approx(6.0)
    assert a["fill_rate"] == pytest.approx(24 / 30) and a["stockout_weeks"] == 1
    # holding 0.5 per unit-week on 20 + 10 + 0 units; shortage 30 per lost unit
    assert a["holding_cost"] == pytest.approx(15.0) and a["shortage_cost"] == pytest.approx(180.0)
    assert a["realised_cost_per_period"] == pytest.approx(65.0) and a["expected_cost_per_period"] == 1.0
    b = r.loc["b"]
    assert b["fill_rate"] == 1.0 and b["stockout_weeks"] == 0 and b["realised_cost_per_period"] == pytest.approx(10.0)


def test_per_policy_summary():
    rows = {r["policy"]: r for r in decisions_by_policy(realised_decisions(*_frames(), holding_rate_per_year=0.26))}
    assert rows["base_stock"]["skus"] == 1 and rows["base_stock"]["stockout_share"] == pytest.approx(1 / 3)
    assert rows["base_stock"]["fill_rate"] == pytest.approx(0.8)
    assert rows["rl_agent"]["realised_cost_per_period"] == pytest.approx(10.0)
    assert decisions_by_policy(realised_decisions(*_frames()[:1], *_frames()[1:])[0:0]) == []
