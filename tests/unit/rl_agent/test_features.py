"""The observation's forecast inputs from a forecast's weekly points: the one definition training's rolling
forecasts and the service's router forecast share."""

from __future__ import annotations

import pytest

from rl_agent.features import forecast_inputs


def test_the_mean_is_over_the_next_lead_time_plus_review_weeks_and_the_bound_is_next_weeks():
    # Bug caught: averaging the whole horizon (13 weeks) instead of the L + R weeks an order covers.
    assert forecast_inputs([1.0, 2.0, 3.0, 100.0], 4.0, lead_time=2, review_period=1) == (2.0, 4.0)


def test_short_missing_or_negative_points():
    assert forecast_inputs([3.0], 5.0, lead_time=4) == (3.0, 5.0)  # fewer weeks than L + R: what there is
    assert forecast_inputs([-2.0, 4.0], None, lead_time=1) == (2.0, None)  # floored at 0; no bound: fallback width
    assert forecast_inputs([2.0, 2.0], 1.0, lead_time=1) == (2.0, 2.0)  # a bound below the mean: no width
    assert forecast_inputs([], 3.0, lead_time=2) == (None, None)
    assert forecast_inputs([None, float("nan"), 6.0], float("nan"), lead_time=2) == pytest.approx((6.0, None))
