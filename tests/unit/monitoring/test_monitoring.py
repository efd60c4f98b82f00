"""monitoring.forecast_quality: served forecasts scored on the weeks observed since (plain values in)."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

from monitoring.forecast_quality import forecast_performance

WEEKS = pd.date_range("2026-01-05", periods=8, freq="W-MON")


def _demand() -> pd.DataFrame:
    # a: 1, 2, 3, ... (scale 1); b: alternating 0/4 (scale 4)
    a = pd.DataFrame({"unique_id": "a", "ds": WEEKS, "y": [1.0, 2, 3, 4, 5, 6, 7, 8]})
    b = pd.DataFrame({"unique_id": "b", "ds": WEEKS, "y": [0.0, 4, 0, 4, 0, 4, 0, 4]})
    return pd.concat([a, b], ignore_index=True)


def _forecasts(offset: float) -> pd.DataFrame:
    """Forecasts for the last two observed weeks and one not observed yet, off by ``offset``."""
    ds = [WEEKS[-2], WEEKS[-1], WEEKS[-1] + pd.Timedelta(weeks=1)]
    truth = {"a": [7.0, 8.0, 9.0], "b": [0.0, 4.0, 0.0]}
    rows = [
        {"sku": sku, "ds": d.date().isoformat(), "yhat": y + offset, "model_version": "stockml-router/v3"}
        for sku, ys in truth.items()
        for d, y in zip(ds, ys, strict=True)
    ]
    return pd.DataFrame(rows)


def test_takes_plain_values_not_settings():
    assert list(inspect.signature(forecast_performance).parameters) == ["forecasts", "demand", "threshold"]


def test_scores_the_observed_weeks_with_the_lag1_scale():
    # a: MAE 2 / scale 1 = 2; b: MAE 2 / scale 4 = 0.5; mean 1.25 (history before the first forecast week)
    report = forecast_performance(_forecasts(2.0), _demand(), threshold=1.0)
    assert report["status"] == "scored" and report["weeks"] == 2 and report["skus"] == 2
    assert report["mase"] == pytest.approx(1.25)
    assert report["degraded"] and report["threshold"] == 1.0
    assert report["model_version"] == "stockml-router/v3"
    assert not forecast_performance(_forecasts(2.0), _demand(), threshold=1.5)["degraded"]


def test_perfect_forecasts_are_healthy_and_future_ones_are_not_judged():
    assert forecast_performance(_forecasts(0.0), _demand(), threshold=0.1)["mase"] == pytest.approx(0.0)
    future = _forecasts(0.0).assign(ds=lambda f: pd.to_datetime(f["ds"]) + pd.Timedelta(weeks=5))
    report = forecast_performance(future, _demand(), 1.5)
    assert report == {"status": "no observed weeks inside the forecast horizon yet", "degraded": False, "weeks": 0}
