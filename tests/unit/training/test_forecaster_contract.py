"""The forecaster contract: capabilities drive fitting in backtests, for every kind of member."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from training.forecasting.contract import Capabilities, Forecaster, panel_arrays, point_frame
from training.forecasting.methods import method_registry


class LastValue(Forecaster):
    """Counts its fits; forecasts the last value of the history it is given."""

    def __init__(self, caps: Capabilities) -> None:
        self.capabilities = caps
        self.fits = 0

    def fit(self, panel: pd.DataFrame) -> LastValue:
        self.fits += 1
        return self

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        ids, ys, stamps = panel_arrays(panel)
        last = np.array([y[-1] for y in ys])
        return point_frame(ids, np.array([s[-1] for s in stamps]), np.repeat(last[:, None], h, 1), "W-MON", level)


def _panel(n_ids: int = 3, n: int = 40) -> pd.DataFrame:
    ds = pd.date_range("2025-01-06", periods=n, freq="W-MON")
    return pd.concat(
        [pd.DataFrame({"unique_id": f"S{i}", "ds": ds, "y": np.arange(n, dtype=float) + i}) for i in range(n_ids)]
    )


@pytest.mark.parametrize(
    ("caps", "fits"),
    [
        (Capabilities(scope="global"), 6),  # every origin
        (Capabilities(scope="global", refit="every_k", refit_every=4), 2),  # origins 0 and 4
        (Capabilities(scope="global", refit="never"), 1),  # once, at the first origin
        (Capabilities(fits=False, refit="never"), 0),  # zero-shot: never fitted
    ],
)
def test_backtest_refits_as_the_member_declares(caps, fits):
    member = LastValue(caps)
    cv = member.cross_validation(_panel(), h=2, n_windows=6, step_size=2)
    assert member.fits == fits
    assert len(cv) == 3 * 6 * 2 and list(cv.columns[:5]) == ["unique_id", "ds", "cutoff", "y", "yhat"]
    # honest: each window forecasts from the last value before its cutoff, never after it
    first = cv.groupby(["unique_id", "cutoff"]).head(1)
    assert (first["yhat"] == first["y"] - 1).all()
    assert (cv["ds"] > cv["cutoff"]).all()


def test_registered_members_declare_capabilities():
    registry = method_registry()
    assert registry["XGBoost"].capabilities.carries_state
    assert registry["XGBoost"].capabilities.scope == "global"
    assert not registry["TSB"].capabilities.carries_state and not registry["TSB"].capabilities.native_intervals
    assert registry["AutoETS"].capabilities.native_intervals
