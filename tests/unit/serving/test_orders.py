"""The base-stock order policy (pure code, no service)."""

from __future__ import annotations

import math

import pytest

from serving.bentos.orders import Z80_UPPER, OrderInput, recommend, weekly_sigma, z_score


def _points(n: int, yhat: float = 10.0, spread: float = Z80_UPPER * 2.0) -> list[dict]:
    """Weekly points with sigma = 2 each (upper half of the 80 % band = z90 * 2)."""
    return [
        {"step": i + 1, "yhat": yhat, "lo80": max(0.0, yhat - spread), "hi80": yhat + spread, "hi95": yhat + 2 * spread}
        for i in range(n)
    ]


def test_formula_by_hand():
    rec = recommend(_points(6), OrderInput(on_hand=12, on_order=3, lead_time_weeks=3, review_period_weeks=1))
    assert rec.weeks_covered == 4
    assert rec.expected_demand == pytest.approx(40.0)
    assert rec.sigma == pytest.approx(2.0 * math.sqrt(4))
    assert rec.z == pytest.approx(1.6449, abs=1e-4)
    assert rec.safety_stock == pytest.approx(1.6449 * 4.0, abs=1e-3)
    assert rec.order_up_to == pytest.approx(40.0 + rec.safety_stock)
    assert rec.inventory_position == 15
    assert rec.order_qty == math.ceil(rec.order_up_to - 15)
    assert rec.policy == "base-stock"


def test_no_order_when_position_covers_the_level():
    rec = recommend(_points(4), OrderInput(on_hand=1000, lead_time_weeks=2))
    assert rec.order_qty == 0 and rec.order_up_to < 1000


def test_min_order_qty_only_raises_positive_orders():
    small = recommend(_points(2, yhat=1.0, spread=0.0), OrderInput(on_hand=0, lead_time_weeks=1, min_order_qty=50))
    assert small.order_qty == 50
    none = recommend(_points(2, yhat=1.0, spread=0.0), OrderInput(on_hand=10, lead_time_weeks=1, min_order_qty=50))
    assert none.order_qty == 0


@pytest.mark.parametrize("lead", [1, 4, 12])
def test_higher_service_level_never_lowers_the_level(lead):
    pts = _points(lead + 2)
    levels = [
        recommend(pts, OrderInput(on_hand=5, lead_time_weeks=lead, review_period_weeks=2, service_level=s))
        for s in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
    ]
    ups = [r.order_up_to for r in levels]
    qtys = [r.order_qty for r in levels]
    assert ups == sorted(ups) and qtys == sorted(qtys)
    assert levels[0].safety_stock == pytest.approx(0.0, abs=1e-9)


def test_longer_lead_time_needs_more_stock():
    pts = _points(20)
    a = recommend(pts, OrderInput(on_hand=0, lead_time_weeks=2))
    b = recommend(pts, OrderInput(on_hand=0, lead_time_weeks=8))
    assert b.expected_demand > a.expected_demand and b.safety_stock > a.safety_stock


def test_sigma_falls_back_to_the_95_band_and_to_zero():
    assert weekly_sigma(10.0, None, 10.0 + 1.959964 * 3) == pytest.approx(3.0, rel=1e-5)
    assert weekly_sigma(10.0, float("nan"), None) == 0.0
    assert weekly_sigma(10.0, 5.0, None) == 0.0  # an upper bound below the point is no spread


def test_costs():
    rec = recommend(
        _points(3),
        OrderInput(on_hand=0, lead_time_weeks=1, review_period_weeks=2, unit_cost=4.0, holding_cost_rate=0.26),
    )
    assert rec.order_value == pytest.approx(rec.order_qty * 4.0)
    expected = (rec.safety_stock + 20.0 / 2) * 4.0 * 0.26 / 52
    assert rec.holding_cost_per_week == pytest.approx(expected)
    assert recommend(_points(3), OrderInput(on_hand=0, lead_time_weeks=1)).holding_cost_per_week is None


def test_bad_inputs():
    with pytest.raises(ValueError, match="need"):
        recommend(_points(2), OrderInput(on_hand=0, lead_time_weeks=4))
    with pytest.raises(ValueError):
        z_score(1.0)
    zero = recommend([{"yhat": None, "hi80": None}] * 2, OrderInput(on_hand=0, lead_time_weeks=1))
    assert zero.order_qty == 0 and zero.expected_demand == 0
