"""monitoring.quality: stored and served forecasts scored on the realised weeks (hand-computed cases)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from monitoring.quality import (
    degradation,
    group_quality,
    score_points,
    served_points,
    stored_points,
    summarise_quality,
)

WEEKS = pd.date_range("2026-01-05", periods=8, freq="W-MON")


def _demand() -> pd.DataFrame:
    # a: 1, 2, ..., 8 (lag-1 scale 1 on any prefix); b: 0/4 alternating (scale 4)
    a = pd.DataFrame({"unique_id": "a", "ds": WEEKS, "y": [1.0, 2, 3, 4, 5, 6, 7, 8]})
    b = pd.DataFrame({"unique_id": "b", "ds": WEEKS, "y": [0.0, 4, 0, 4, 0, 4, 0, 4]})
    return pd.concat([a, b], ignore_index=True)


def _stored(offset: float, origin: pd.Timestamp = WEEKS[5], version: str = "stockml-router/v3") -> pd.DataFrame:
    """Forecasts from ``origin`` for the next three weeks (the third not observed yet), off by ``offset``."""
    ds = [origin + pd.Timedelta(weeks=k) for k in (1, 2, 3)]
    truth = dict(zip(_demand()["unique_id"] + _demand()["ds"].astype(str), _demand()["y"], strict=True))
    rows = [
        {"sku": sku, "ds": d.date().isoformat(), "yhat": truth.get(sku + str(d.date()), 0.0) + offset,
         "model_version": version, "cutoff_week": origin.date().isoformat(), "pipeline": "stock_training"}
        for sku in ("a", "b") for d in ds
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_stored_forecasts_are_scored_with_the_scale_before_their_origin():
    points = stored_points(_stored(2.0), _demand())
    assert len(points) == 4  # 2 SKUs x 2 observed weeks (the third week is in the future)
    assert dict(zip(points["unique_id"], points["scale"], strict=False)) == {"a": 1.0, "b": 4.0}
    q = group_quality(score_points([points]), ["model_version"]).iloc[0]
    # a: MAE 2 / 1 = 2; b: MAE 2 / 4 = 0.5 -> MASE 1.25; forecasts 2 units high -> bias +2
    assert q["mae"] == pytest.approx(2.0) and q["mase"] == pytest.approx(1.25) and q["bias"] == pytest.approx(2.0)
    assert q["points"] == 4 and q["skus"] == 2


def test_the_newest_rows_of_an_origin_win():
    old = _stored(2.0).assign(created_at=pd.Timestamp("2026-01-01"), pipeline="cli")
    new = _stored(0.0).assign(created_at=pd.Timestamp("2026-02-01"))
    points = stored_points(pd.concat([old, new]), _demand())
    assert len(points) == 4 and (points["y"] == points["yhat"]).all()


def test_served_records_take_the_feedback_actual_before_the_source():
    served = pd.DataFrame(
        [{"forecast_id": "f1", "sku": "a", "model_name": "stockml-router", "model_version": "4", "scale": 2.0,
          "points": json.dumps({"2026-02-16": 10.0, "2026-02-23": 9.0, "2026-03-02": None}),
          "created_at": pd.Timestamp("2026-02-15")}]
    )  # fmt: skip
    feedback = pd.DataFrame([{"forecast_id": "f1", "ds": "2026-02-23", "y": 5.0}])
    points = served_points(served, feedback, _demand())
    by_ds = points.set_index("ds")
    assert list(points["model_version"].unique()) == ["stockml-router/v4"]
    assert by_ds.loc[pd.Timestamp("2026-02-16"), "y"] == 7.0  # the source's week
    assert by_ds.loc[pd.Timestamp("2026-02-23"), "y"] == 5.0  # the caller's /feedback wins over the source's 8
    q = group_quality(score_points([points]), ["model_version"]).iloc[0]
    # |7-10| and |5-9| -> MAE 3.5; the recorded scale 2 -> MASE 1.75; bias (3 + 4) / 2
    assert q["mae"] == pytest.approx(3.5) and q["mase"] == pytest.approx(1.75) and q["bias"] == pytest.approx(3.5)


def test_summary_per_version_pattern_and_week():
    points = score_points([stored_points(_stored(2.0), _demand())], pd.Series({"a": "smooth", "b": "intermittent"}))
    s = summarise_quality(points)
    assert [r["model_version"] for r in s["by_version"]] == ["stockml-router/v3"]
    pattern = {r["pattern"]: r["mase"] for r in s["by_pattern"]}
    assert pattern == pytest.approx({"smooth": 2.0, "intermittent": 0.5})
    weeks = [(r["ds"], r["mase"]) for r in s["by_week"]]
    assert weeks == [("2026-02-16", pytest.approx(1.25)), ("2026-02-23", pytest.approx(1.25))]


def _weekly(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"ds": WEEKS[: len(values)], "mase": values})


def test_degradation_needs_consecutive_weeks_above_the_backtest_level():
    # backtest 1.0, ratio 1.2: limit 1.2
    two_above = degradation(_weekly([1.0, 1.3, 1.5]), 1.0, 1.2, 2)
    assert two_above["degraded"] and two_above["limit"] == pytest.approx(1.2)
    assert two_above["consecutive_weeks_above"] == 2
    one_above = degradation(_weekly([1.5, 1.0, 1.3]), 1.0, 1.2, 2)
    assert not one_above["degraded"] and one_above["consecutive_weeks_above"] == 1
    at_limit = degradation(_weekly([1.2, 1.2]), 1.0, 1.2, 2)  # "more than": equal is healthy
    assert not at_limit["degraded"]


def test_degradation_is_not_judged_without_a_level_or_enough_weeks():
    assert degradation(_weekly([5.0, 5.0]), None, 1.2, 2)["status"] == "no backtest MASE for the model in service"
    short = degradation(_weekly([5.0]), 1.0, 1.2, 2)
    assert not short["degraded"] and "needs 2" in short["status"]
