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
from training.forecasting.rolling import (
    FAST_MEMBERS,
    OriginPanel,
    horizons_from_products,
    member_paths,
    rolling_forecasts,
    statsforecast_paths,
)

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


# --- the kernels against statsforecast: every origin's forecast is the member fitted on the weeks before it ---


def _seasonal_panel(weeks: int = 170) -> pd.DataFrame:
    """One SKU with a yearly peak and more than 3 x 52 weeks (SES's seasonal adjustment applies
    at its last origins), one sparse SKU that starts with zeros, one that never sells."""
    rng = np.random.default_rng(11)
    ds = pd.date_range("2022-01-03", periods=weeks, freq="W-MON")
    season = np.where(np.arange(weeks) % 52 >= 46, 80.0, 20.0)  # a year-end peak, M4's test finds it
    sparse = (rng.poisson(3, weeks) * (rng.random(weeks) < 0.2)).astype(float)
    sparse[:15] = 0.0
    return pd.concat(
        [
            pd.DataFrame({"unique_id": "S", "ds": ds, "y": rng.poisson(season).astype(float)}),
            pd.DataFrame({"unique_id": "Z", "ds": ds[-60:], "y": sparse[-60:]}),
            pd.DataFrame({"unique_id": "N", "ds": ds[-20:], "y": 0.0}),
        ],
        ignore_index=True,
    )


def _paths(panel: pd.DataFrame, horizons, members=FAST_MEMBERS):
    data = OriginPanel.build(panel, horizons, 8, "W-MON")
    return data, *member_paths(data, list(members), 52, "W-MON", 1)


@pytest.mark.parametrize("name", ["CrostonSBA", "TSB", "SES"])
def test_each_origins_forecast_is_statsforecasts_member_fitted_on_the_weeks_before_it(name):
    # Bug caught: a recursion state off by one week (the origin's own week used), the first demand or the
    # all-zero history treated unlike statsforecast, alpha not re-optimised per origin, seasonal indices
    # taken from the whole series.
    panel = _seasonal_panel()
    horizons = {"S": 4, "Z": 2, "N": 3}
    data, one_step, mean = _paths(panel, horizons, members=(name,))
    model = method_registry()[name].member(Setup(horizon=4)).statsforecast_model()
    checked = 0
    for s, sku in enumerate(data.row_ids.iloc[data.row_offsets[:-1]]):
        y = panel[panel["unique_id"] == sku]["y"].to_numpy()
        first, stop = data.row_offsets[s], data.row_offsets[s + 1]
        for row in sorted({first, first + 1, first + 9, max(first, stop - 14), stop - 3, stop - 1}):
            t = int(data.row_t[row])
            points = model.forecast(y=y[:t], h=horizons[sku])["mean"]
            assert np.allclose(one_step[row, 0], points[0], rtol=1e-9, atol=1e-12), (sku, t)
            assert np.allclose(mean[row, 0], points.mean(), rtol=1e-9, atol=1e-12), (sku, t)
            checked += 1
    assert checked >= 16


def test_the_kernels_give_statsforecasts_cross_validation_at_every_origin():
    # The previous implementation (statsforecast cross_validation, refit at every origin) is the reference.
    for panel, horizons in ((_panel(), HORIZONS), (_seasonal_panel(), {"S": 4, "Z": 2, "N": 3})):
        data, one_step, mean = _paths(panel, horizons)
        ref_step, ref_mean = statsforecast_paths(data, list(FAST_MEMBERS), 52, "W-MON", 1)
        assert np.allclose(one_step, ref_step, rtol=1e-9, atol=1e-12)
        assert np.allclose(mean, ref_mean, rtol=1e-9, atol=1e-12)


def test_seasonal_adjustment_applies_at_the_origins_with_three_years_only():
    # The seasonal SKU's SES is adjusted (its forecast follows the cycle) once y[:t] has 3 x 52 weeks.
    data, one_step, mean = _paths(_seasonal_panel(), {"S": 4}, members=("SES",))
    rows = np.flatnonzero(data.row_ids == "S")
    t = data.row_t[rows]
    assert t.max() == 170
    assert not np.allclose(one_step[rows[t >= 156], 0], mean[rows[t >= 156], 0])  # the cycle within 4 weeks
    assert np.allclose(one_step[rows[t < 156], 0], mean[rows[t < 156], 0])  # flat before


def test_members_without_a_kernel_go_through_statsforecast():
    panel = _panel()
    forecasts = rolling_forecasts(panel, 1, members=("Naive", "SES"))
    data, one_step, _ = _paths(panel, 1, members=("Naive", "SES"))
    rows = np.arange(data.n_rows)
    y_last = data.y[data.offsets[data.row_sku] + data.row_t - 1]
    assert np.allclose(one_step[:, 0], y_last)  # Naive: the week before the origin
    assert set(forecasts["method"]) <= {"Naive", "SES"} and len(forecasts) == len(rows)


def test_selection_and_bound_are_the_rolling_mse_argmin_and_the_rolling_error_quantile():
    # The same statistics as pandas' rolling windows over each SKU's past one-step errors.
    panel = _panel()
    data, one_step, mean = _paths(panel, HORIZONS)
    forecasts = rolling_forecasts(panel, HORIZONS)
    errors = pd.DataFrame(data.y_next[:, None] - one_step, columns=list(FAST_MEMBERS))
    past = errors.groupby(data.row_sku).shift(1)
    grouped = past.groupby(data.row_sku)
    mse = grouped.transform(lambda s: (s**2).rolling(26, min_periods=1).mean())
    q80 = grouped.transform(lambda s: s.rolling(52, min_periods=8).quantile(0.8))
    choice = np.where(mse.isna().all(axis=1), 0, np.argmin(mse.fillna(np.inf).to_numpy(), axis=1))
    rows = np.arange(data.n_rows)
    assert forecasts["method"].tolist() == np.asarray(FAST_MEMBERS)[choice].tolist()
    assert np.allclose(forecasts["yhat"], np.clip(mean[rows, choice], 0, None))
    bound = np.maximum(one_step[rows, choice] + q80.to_numpy()[rows, choice], 0)
    assert np.allclose(forecasts["hi80"], bound, equal_nan=True)
