"""Rolling-origin forecasts for the order agent: made from the weeks before each origin only, aligned with
the week they are read at, the same horizon mean as the service takes from the router's forecast, and a
conformal bound from the member's own past errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rl_agent.features import forecast_inputs
from training.forecasting.contract import Setup
from training.forecasting.methods import method_registry
from training.forecasting.rolling import horizons_from_products, rolling_forecasts

WEEKS = 40


def _panel(weeks: int = WEEKS) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-01-01", periods=weeks, freq="W-MON")
    smooth = rng.poisson(20, weeks).astype(float)
    sparse = (rng.poisson(4, weeks) * (rng.random(weeks) < 0.3)).astype(float)
    short = rng.poisson(5, 12).astype(float)  # starts late: its origins are its own
    return pd.concat(
        [
            pd.DataFrame({"unique_id": "A", "ds": ds, "y": smooth}),
            pd.DataFrame({"unique_id": "B", "ds": ds, "y": sparse}),
            pd.DataFrame({"unique_id": "C", "ds": ds[-12:], "y": short}),
        ],
        ignore_index=True,
    )


HORIZONS = {"A": 3, "B": 5, "C": 2}


@pytest.fixture(scope="module")
def rolled() -> tuple[pd.DataFrame, pd.DataFrame]:
    panel = _panel()
    return panel, rolling_forecasts(panel, HORIZONS)


def test_a_forecast_made_at_an_origin_ignores_the_weeks_after_it(rolled):
    # Bug caught: a forecast (or its member choice, or its bound) peeking at the weeks it forecasts.
    panel, before = rolled
    cut = panel["ds"].unique()[25]
    changed = panel.assign(y=np.where(panel["ds"] >= cut, panel["y"] * 7 + 3, panel["y"]))
    after = rolling_forecasts(changed, HORIZONS)
    made_before = before["ds"] <= cut  # the row at ds is made from the weeks before ds
    pd.testing.assert_frame_equal(
        before[made_before].reset_index(drop=True), after[after["ds"] <= cut].reset_index(drop=True)
    )
    later = before[~made_before].reset_index(drop=True)
    assert not np.allclose(later["yhat"], after[after["ds"] > cut]["yhat"].to_numpy())  # the change is seen


def test_one_row_per_origin_from_min_history_to_the_week_after_the_data(rolled):
    panel, forecasts = rolled
    for sku, rows in panel.groupby("unique_id"):
        got = forecasts[forecasts["unique_id"] == sku]["ds"].reset_index(drop=True)
        expected = [*rows["ds"].iloc[8:], rows["ds"].iloc[-1] + pd.Timedelta(weeks=1)]
        assert got.tolist() == expected, sku


def test_yhat_is_the_chosen_members_mean_over_the_skus_horizon_as_the_service_takes_it(rolled):
    """The row at ds is the member fitted on the weeks before ds, its mean over the next L + R weeks: the
    same figure :func:`rl_agent.features.forecast_inputs` gives the service from the router's points."""
    panel, forecasts = rolled
    registry = method_registry()
    for sku, index in (("A", 20), ("B", 30), ("C", 10)):
        y = panel[panel["unique_id"] == sku]["y"].to_numpy()
        row = forecasts[
            (forecasts["unique_id"] == sku) & (forecasts["ds"] == panel[panel["unique_id"] == sku]["ds"].iloc[index])
        ]
        model = registry[row["method"].iloc[0]].member(Setup(horizon=HORIZONS[sku])).statsforecast_model()
        points = model.forecast(y=y[:index], h=HORIZONS[sku])["mean"]
        mean, _ = forecast_inputs(points, None, HORIZONS[sku] - 1, 1)
        assert row["yhat"].iloc[0] == pytest.approx(mean), sku


def test_the_bound_is_the_one_step_forecast_plus_the_80_percent_quantile_of_past_errors():
    panel = _panel()
    single = rolling_forecasts(panel[panel["unique_id"] == "A"], 1, members=("SES",), min_errors=5)
    y = panel[panel["unique_id"] == "A"]["y"].to_numpy()
    errors = y[8:] - single["yhat"].to_numpy()[:-1]  # SES is flat: its one-step forecast is yhat
    assert single["hi80"].iloc[:5].isna().all()  # fewer than min_errors past errors: no bound
    for k in (5, 12, 31):
        assert single["hi80"].iloc[k] == pytest.approx(max(single["yhat"].iloc[k] + np.quantile(errors[:k], 0.8), 0))


def test_horizons_come_from_the_lead_times():
    products = pd.DataFrame({"sku": ["A", "B", "A"], "lead_time_weeks": [2, 0, 2]})
    assert horizons_from_products(products, review_period=1) == {"A": 3, "B": 1}
