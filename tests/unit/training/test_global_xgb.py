"""The global XGBoost member: learns across series, backtests honestly, travels with the router."""

import json

import numpy as np
import pandas as pd
import pytest

from training.forecasting.backtest import backtest
from training.forecasting.global_xgb import GlobalXGBoost
from training.forecasting.zoo import ModelZoo

# Fewer, bigger boosting steps than the defaults: the same behaviour in a fraction of the time.
FAST = {"XGBoost": {"n_estimators": 40, "learning_rate": 0.25, "max_bin": 64}}


def _zoo(methods, **kw):
    return ModelZoo(methods=methods, n_jobs=1, params=FAST, **kw)


def _seasonal_panel(n_ids=40, n=150, seed=0, start="2022-01-03"):
    """Series sharing one yearly shape at different scales: a global model can learn the shape."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    shape = 1 + 0.8 * np.sin(2 * np.pi * t / 52)
    frames = []
    for i in range(n_ids):
        scale = 5 * (1 + i)
        y = rng.poisson(scale * shape).astype(float)
        frames.append(
            pd.DataFrame({"unique_id": f"S{i:02d}", "ds": pd.date_range(start, periods=n, freq="W-MON"), "y": y})
        )
    return pd.concat(frames, ignore_index=True)


def test_it_learns_a_shared_seasonal_shape_better_than_naive():
    demand = _seasonal_panel()
    bt = backtest(demand, _zoo(["Naive", "XGBoost"]), h=13, n_windows=2)
    mase = bt.summary["mase"]
    assert mase["XGBoost"] < 0.8 * mase["Naive"], mase.to_dict()


def test_backtest_origins_line_up_with_statsforecast_on_ragged_series():
    demand = _seasonal_panel(n_ids=6, n=120)
    # Ragged: series end on different weeks and have different lengths.
    demand = demand[~((demand["unique_id"] == "S01") & (demand["ds"] > "2024-01-01"))]
    demand = demand[~((demand["unique_id"] == "S02") & (demand["ds"] < "2022-06-01"))]
    cv = _zoo(["Naive", "XGBoost"]).cross_validation(demand, h=8, n_windows=3)
    keys = {
        m: set(map(tuple, g[["unique_id", "ds", "cutoff"]].astype(str).to_numpy())) for m, g in cv.groupby("method")
    }
    assert keys["Naive"] == keys["XGBoost"]
    xgb_part = cv[cv["method"] == "XGBoost"]
    assert xgb_part["y"].notna().all() and xgb_part["yhat"].notna().all()
    # The actuals are the series' own values at those weeks.
    merged = xgb_part.merge(demand, on=["unique_id", "ds"], suffixes=("", "_src"))
    assert len(merged) == len(xgb_part) and np.allclose(merged["y"], merged["y_src"])


def test_forecast_dates_follow_the_weekly_grid_and_continue_past_the_trained_horizon():
    demand = _seasonal_panel(n_ids=8, n=100)
    zoo = _zoo(["XGBoost"], horizon=8).fit(demand)  # trained for a horizon of 8
    long = zoo.predict(20, ())  # 20 > 8: continued block by block
    assert len(long) == 8 * 20 and long["yhat"].notna().all() and (long["yhat"] >= 0).all()
    first = long.groupby("unique_id")["ds"].min()
    assert (first == demand["ds"].max() + pd.Timedelta(weeks=1)).all()
    assert (long.groupby("unique_id")["ds"].diff().dropna() == pd.Timedelta(weeks=1)).all()


def test_a_fitted_model_is_reused_not_refitted(tmp_path):
    demand = _seasonal_panel(n_ids=20, n=120)
    zoo = _zoo(["XGBoost"])
    full = zoo.forecast(demand, h=13, intervals=False)
    entries = zoo.save(tmp_path)  # XGBoost's own JSON + a JSON config, read back by a fresh zoo
    assert (tmp_path / "XGBoost" / "booster.json").exists() and entries[0]["state"]["h_"] == 13
    one = demand[demand["unique_id"] == "S03"]
    again = ModelZoo.load(tmp_path, entries, n_jobs=1, horizon=13).predict(13, (), panel=one)
    expected = full[full["unique_id"] == "S03"]["yhat"].to_numpy()
    assert np.allclose(again["yhat"].to_numpy(), expected)
    # Fitted on that one series alone, the forecast would differ: the stored model was used.
    alone = _zoo(["XGBoost"]).forecast(one, h=13, intervals=False)
    assert not np.allclose(alone["yhat"].to_numpy(), expected)


def test_too_little_history_falls_back_to_the_recent_level():
    model = GlobalXGBoost(n_jobs=1, horizon=4).fit_arrays([np.array([3.0, 5.0, 4.0])])
    assert model.booster_ is None
    fc = model.predict_arrays([np.array([3.0, 5.0, 4.0]), np.array([])], h=4)
    assert np.allclose(fc[0], 4.0) and np.allclose(fc[1], 0.0)


def test_tunable_parameters_are_checked():
    with pytest.raises(ValueError, match="takes no parameter"):
        ModelZoo(methods=["XGBoost"], params={"XGBoost": {"depth": 3}})
    zoo = ModelZoo(methods=["XGBoost"], n_jobs=1, params={"XGBoost": {"max_depth": 2, "n_estimators": 5}})
    zoo.forecast(_seasonal_panel(n_ids=4, n=60), h=4, intervals=False)
    assert zoo.fitted_["XGBoost"].max_depth == 2 and zoo.fitted_["XGBoost"].booster_.num_boosted_rounds() == 5


def test_predict_before_fit_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before fit"):
        GlobalXGBoost().predict_arrays([np.ones(10)], h=3)
    with pytest.raises(RuntimeError, match="fit first"):
        ModelZoo(["XGBoost"]).predict(3)


def test_the_router_carries_the_catalogue_model_to_a_one_sku_request(tmp_path):
    from training.router.predict import RouterModel, fit_members
    from training.router.storage import load_router, save_router
    from training.router.train import train_router

    demand = _seasonal_panel(n_ids=30, n=130)
    bt = backtest(demand, _zoo(["Naive", "SES", "XGBoost"]), h=8, n_windows=3)
    trained = train_router(demand, bt, season_length=52, mode="combine", top_k=2)
    members = fit_members(demand, trained.router.methods_, 52, trained.horizon, FAST)
    assert members.fitted_["XGBoost"].booster_ is not None
    save_router(RouterModel.from_training(trained, {}, FAST, members), tmp_path / "router")
    model = load_router(tmp_path / "router")  # what the registry stores: data, read back
    one = demand[demand["unique_id"] == "S05"]
    fc = model.predict(one, horizon=8)
    assert len(fc) == 8 and fc["yhat"].notna().all() and (fc["lo95"] <= fc["hi95"]).all()
    weights = json.loads(fc["weights"].iloc[0])
    assert weights.get("XGBoost", 0) > 0, weights
    # Without the carried model the member would be refitted on this one SKU: a different forecast.
    bare = RouterModel.from_training(trained, {}, FAST)
    assert not np.allclose(bare.predict(one, horizon=8)["yhat"], fc["yhat"])
