"""The statsforecast zoo: every method forecasts, intervals where native, M4 protocol details."""

import numpy as np
import pandas as pd
import pytest

from training.forecasting.backtest import backtest
from training.forecasting.methods import default_methods, method_registry
from training.forecasting.statistical import seasonal_indices, seasonality_test
from training.forecasting.zoo import ModelZoo


def _series(n_ids=6, n=120, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_ids):
        t = np.arange(n)
        season = 1 + 0.5 * np.sin(2 * np.pi * t / 52)
        y = rng.poisson(20 * season) if i % 2 == 0 else rng.poisson(2, n) * (rng.random(n) < 0.3)
        frames.append(
            pd.DataFrame(
                {"unique_id": f"S{i}", "ds": pd.date_range("2023-01-02", periods=n, freq="W-MON"), "y": y.astype(float)}
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_every_method_forecasts_non_negative_with_native_intervals():
    demand = _series()
    # The default zoo (opt-in members: deep, TimesFM, NeuralProphet have their own tests); AutoARIMA: pipeline tests
    methods = [m for m in default_methods() if m != "AutoARIMA"]
    fc = ModelZoo(methods=methods, n_jobs=1).forecast(demand, h=8)
    assert set(fc["method"]) == set(methods)
    assert len(fc) == len(methods) * 6 * 8
    assert fc["yhat"].notna().all() and (fc["yhat"] >= 0).all()
    for name in methods:
        part = fc[fc["method"] == name]
        if method_registry()[name].capabilities.native_intervals:
            assert part[["lo80", "hi80", "lo95", "hi95"]].notna().all().all(), name
            assert (part["lo95"] <= part["lo80"] + 1e-9).all() and (part["hi80"] <= part["hi95"] + 1e-9).all()
        else:
            assert part["lo80"].isna().all(), name


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method"):
        ModelZoo(methods=["Prophet9000"])


def test_naive2_removes_and_restores_seasonality():
    t = np.arange(260)
    y = 100 * (1 + 0.4 * np.sin(2 * np.pi * t / 52)) + np.random.default_rng(0).normal(0, 2, 260)
    assert seasonality_test(y, 52) and not seasonality_test(np.random.default_rng(1).normal(10, 1, 260), 52)
    idx = seasonal_indices(y, 52)
    assert idx.mean() == pytest.approx(1.0)
    df = pd.DataFrame({"unique_id": "s", "ds": pd.date_range("2021-01-04", periods=260, freq="W-MON"), "y": y})
    fc = ModelZoo(methods=["Naive", "Naive2"], n_jobs=1).forecast(df, h=13)
    naive, naive2 = (fc[fc.method == m]["yhat"].to_numpy() for m in ("Naive", "Naive2"))
    assert np.ptp(naive) == 0  # flat
    # Naive2 follows the seasonal curve of the next 13 weeks (level set by the last, noisy, week).
    curve = 100 * (1 + 0.4 * np.sin(2 * np.pi * np.arange(13) / 52))
    assert np.ptp(naive2) > 30 and np.corrcoef(naive2, curve)[0, 1] > 0.98


def test_backtest_windows_and_exclusion_of_short_series():
    demand = _series(n=80)
    short = pd.DataFrame({"unique_id": "short", "ds": pd.date_range("2024-03-04", periods=20, freq="W-MON"), "y": 1.0})
    res = backtest(pd.concat([demand, short]), ModelZoo(methods=["Naive", "Naive2", "TSB"], n_jobs=1), h=6, n_windows=3)
    assert res.excluded == ["short"]
    assert res.forecasts["cutoff"].nunique() == 3
    assert len(res.errors) == 6 * 3 * 3
    assert res.summary.loc["Naive2", "owa"] == pytest.approx(1.0)
    assert set(res.best_method_per_sku().index) == {f"S{i}" for i in range(6)}
