"""The Spark engine's pandas-side helpers (no Spark session: these run inside its partitions or on the driver)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.distributed.spark_engine import Frozen, drop_last, shippable
from training.forecasting.global_xgb import GlobalXGBoost


def _panel() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {"unique_id": uid, "ds": pd.date_range("2024-01-01", periods=n, freq="W-MON"), "y": rng.poisson(5, n)}
        )
        for uid, n in (("b", 30), ("a", 40))
    ]
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=1)  # shuffled, as a partition may be


def test_drop_last_keeps_each_series_history_before_the_origin():
    panel = _panel()
    out = drop_last(panel, 5)
    assert out.groupby("unique_id").size().to_dict() == {"a": 35, "b": 25}
    first = pd.Timestamp("2024-01-01")  # a Monday: the first week of both series
    assert out.groupby("unique_id")["ds"].max().to_dict() == {"a": first + pd.Timedelta(weeks=34),
                                                              "b": first + pd.Timedelta(weeks=24)}  # fmt: skip
    assert out["ds"].is_monotonic_increasing or out.groupby("unique_id")["ds"].is_monotonic_increasing.all()
    assert drop_last(panel, 0) is panel


def test_a_shipped_member_leaves_its_history_behind_and_the_original_intact():
    panel = _panel().astype({"y": float})
    member = GlobalXGBoost(horizon=4, lags=8, n_estimators=5).fit(panel)
    light = shippable(member)
    assert light._panel is None and member._panel is panel
    pd.testing.assert_frame_equal(light.predict(4, panel=panel), member.predict(4, panel=panel))


def test_a_frozen_member_is_not_refitted_by_a_backtest():
    panel = _panel().astype({"y": float})
    member = GlobalXGBoost(horizon=4, lags=8, n_estimators=5).fit(panel)
    booster = member.booster_
    cv = Frozen(member).cross_validation(panel, 4, 2, 4)
    assert member.booster_ is booster
    assert len(cv) == 2 * 2 * 4 and list(cv.columns[:4]) == ["unique_id", "ds", "cutoff", "y"]
