"""The NeuralProphet member on the forecaster contract: columns and stamps, a seed that repeats,
and the planned-promotion regressor actually used. One series, a few epochs: about 20 s,
most of it importing neuralprophet and torch."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from training.forecasting.methods import method_registry
from training.forecasting.zoo import ModelZoo

pytest.importorskip("neuralprophet")

H = 6


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 130
    ds = pd.date_range("2024-05-06", periods=n, freq="W-MON")
    promo = np.zeros(n)
    promo[rng.choice(np.arange(5, n), 14, replace=False)] = 1.0
    y = 40 + 15 * np.cos(2 * np.pi * np.arange(n) / 52) + 35 * promo + rng.normal(0, 2, n)
    return pd.DataFrame(
        {"unique_id": "S1", "ds": ds, "y": np.round(y), "unit_price": 10.0 - 2.0 * promo, "on_promotion": promo}
    )


def _future(series: pd.DataFrame, promo_step: int | None) -> pd.DataFrame:
    ds = pd.date_range(series["ds"].max() + pd.Timedelta(weeks=1), periods=H, freq="W-MON")
    promo = np.zeros(H)
    if promo_step is not None:
        promo[promo_step] = 1.0
    return pd.DataFrame({"unique_id": "S1", "ds": ds, "unit_price": 10.0 - 2.0 * promo, "on_promotion": promo})


@pytest.fixture(scope="module")
def member(series):
    return method_registry()["NeuralProphet"].member(epochs=15).fit(series)


def test_registered_opt_in_and_imported_lazily():
    spec = method_registry()["NeuralProphet"]
    assert spec.family == "seasonal" and not spec.in_default
    caps = spec.capabilities
    assert caps.exogenous and caps.scope == "local" and not caps.carries_state and caps.refit == "every_k"
    assert "NeuralProphet" not in ModelZoo().methods


def test_predict_follows_the_contract(member, series):
    fc = member.predict(H, (80, 95), panel=series, future=_future(series, None))
    assert fc.columns.tolist() == ["unique_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95"]
    assert fc["ds"].tolist() == _future(series, None)["ds"].tolist()
    assert fc["yhat"].notna().all() and fc["lo80"].isna().all()
    assert "neuralprophet" in sys.modules  # imported by the member, when it first fitted


def test_a_seeded_fit_repeats(member, series):
    again = method_registry()["NeuralProphet"].member(epochs=15).fit(series)
    future = _future(series, 2)
    np.testing.assert_allclose(member.predict(H, panel=series, future=future)["yhat"],
                               again.predict(H, panel=series, future=future)["yhat"], rtol=1e-6)  # fmt: skip


def test_a_planned_promotion_raises_its_week(member, series):
    with_promo = member.predict(H, panel=series, future=_future(series, 2))["yhat"].to_numpy()
    without = member.predict(H, panel=series, future=_future(series, None))["yhat"].to_numpy()
    lift = with_promo - without
    assert lift[2] > 15, lift  # the history's promotions added about 35 units
    assert np.abs(np.delete(lift, 2)).max() < 1e-6
    # Without a future frame the last known values carry on (no promotion in the last week here).
    assert series["on_promotion"].iloc[-1] == 0
    np.testing.assert_allclose(member.predict(H, panel=series)["yhat"], without, rtol=1e-6)


def test_a_series_without_regressors_and_a_short_one_still_forecast(series):
    plain = series[["unique_id", "ds", "y"]]
    short = plain.head(5).assign(unique_id="S2")
    m = method_registry()["NeuralProphet"].member(epochs=5)
    fc = m.fit(pd.concat([plain, short])).predict(3)
    assert fc.groupby("unique_id").size().to_dict() == {"S1": 3, "S2": 3}
    assert (fc.loc[fc["unique_id"] == "S2", "yhat"] == short["y"].mean()).all()


def test_the_promotion_flag_by_default_and_the_price_on_request(member, series):
    assert member.regressors_["S1"] == ["on_promotion"]
    both = method_registry()["NeuralProphet"].member(epochs=5, regressors=("unit_price", "on_promotion"))
    assert both.fit(series).regressors_["S1"] == ["unit_price", "on_promotion"]
    with pytest.raises(ValueError, match="takes no parameter"):
        ModelZoo(["NeuralProphet"], params={"NeuralProphet": {"quantiles": [0.1]}})
