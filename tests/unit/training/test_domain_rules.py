"""Domain rules written once: the MASE scale, the week start, Syntetos-Boylan, XYZ, registry names.

Each rule has one implementation; these tests pin its convention and check that every caller
(backtest metrics, the promotion guardrail's mean MASE, live monitoring, the router's rule,
classification, the demo generator) gives the same answer for the same input.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest

from monitoring.forecast_quality import forecast_performance
from training.classification.classes import PATTERNS, demand_patterns, xyz_classes, xyz_codes
from training.data.weekly import last_complete_week_start, week_start
from training.forecasting.metrics import (
    defined_scales,
    insample_scales,
    mase,
    mase_scale,
    mean_mase,
    pointwise_errors,
    summarise,
)
from training.registry.names import LSTM_MODEL, RL_AGENT_MODEL, ROUTER_MODEL
from training.router.train import PatternRule

# a: scale 2 (diffs 2, 2); flat: constant history (no naive error); short: one point (no difference)
HISTORY = pd.DataFrame(
    {
        "unique_id": ["a"] * 3 + ["flat"] * 3 + ["short"],
        "ds": pd.to_datetime(["2026-01-05", "2026-01-12", "2026-01-19"] * 2 + ["2026-01-19"]),
        "y": [1.0, 3.0, 5.0, 4.0, 4.0, 4.0, 9.0],
    }
)
ACTUALS = pd.DataFrame(
    {
        "unique_id": ["a", "a", "flat", "short"],
        "ds": pd.to_datetime(["2026-01-26", "2026-02-02", "2026-01-26", "2026-01-26"]),
        "y": [6.0, 8.0, 4.0, 9.0],
        "yhat": [5.0, 5.0, 1.0, 0.0],
    }
)


def test_an_undefined_mase_scale_is_nan_everywhere():
    """One convention: no naive error to measure, or a zero one, is an undefined scale (NaN)."""
    assert math.isnan(mase_scale([4.0, 4.0, 4.0])) and math.isnan(mase_scale([9.0]))
    assert mase_scale([1.0, 3.0, 5.0]) == pytest.approx(2.0)
    scales = insample_scales(HISTORY)
    assert scales["a"] == pytest.approx(2.0)
    assert scales[["flat", "short"]].isna().all()
    assert defined_scales(pd.Series([0.0, -1.0, np.inf, np.nan, 3.0])).isna().tolist() == [True] * 4 + [False]
    assert math.isnan(mase([4.0], [1.0], [4.0, 4.0, 4.0]))


def test_backtest_guardrail_and_monitoring_agree_on_the_same_forecast():
    """Backtest metrics, the guardrail's mean MASE and live monitoring score the same MASE."""
    # a: MAE (1 + 3) / 2 = 2 over scale 2 → MASE 1; flat and short have no MASE and are left out.
    errors = pointwise_errors(ACTUALS.assign(method="m"), insample_scales(HISTORY))
    by_sku = errors.set_index("unique_id")["mase"]
    assert by_sku["a"] == pytest.approx(1.0) and by_sku[["flat", "short"]].isna().all()
    backtest_mase = summarise(errors).loc["m", "mase"]
    guardrail_mase = mean_mase(ACTUALS, HISTORY)
    live = forecast_performance(
        ACTUALS.rename(columns={"unique_id": "sku"})[["sku", "ds", "yhat"]],
        pd.concat([HISTORY, ACTUALS.drop(columns="yhat")]),
        0.5,
    )
    assert backtest_mase == pytest.approx(1.0)
    assert guardrail_mase == pytest.approx(1.0)
    assert live["mase"] == pytest.approx(1.0) and live["degraded"] and live["skus"] == 3
    assert math.isnan(mean_mase(ACTUALS[ACTUALS["unique_id"] != "a"], HISTORY))


def test_week_start_is_monday_for_scalars_and_series():
    days = pd.Series(pd.date_range("2026-11-16 13:45", periods=14, freq="D"), index=range(100, 114))
    starts = week_start(days)
    assert list(starts.index) == list(days.index)
    assert (starts.dt.weekday == 0).all() and (starts.dt.hour == 0).all()
    assert set(starts) == {pd.Timestamp("2026-11-16"), pd.Timestamp("2026-11-23")}
    assert week_start("2026-11-22") == pd.Timestamp("2026-11-16")  # a Sunday: its week began Monday
    assert week_start(pd.Timestamp("2026-11-23 08:00")) == pd.Timestamp("2026-11-23")
    # The last complete week before a cut-off: the cut-off's own week only when it is a Sunday.
    assert last_complete_week_start("2026-11-22") == pd.Timestamp("2026-11-16")
    assert last_complete_week_start("2026-11-21") == pd.Timestamp("2026-11-09")
    assert last_complete_week_start("2026-11-23") == pd.Timestamp("2026-11-16")


def test_demo_history_starts_on_a_week_start():
    from training.data.demo import generate_catalogue

    cat = generate_catalogue(3, 20, seed=1, end="2026-11-22", dirty_rows=False)
    assert cat.start == week_start(cat.start)


def _grid() -> pd.DataFrame:
    adi = [0.5, 1.0, 1.31, 1.32, 1.33, 2.0, 5.0]
    cv2 = [0.0, 0.2, 0.48, 0.49, 0.5, 1.0, 3.0]
    return pd.DataFrame([(a, c) for a in adi for c in cv2], columns=["adi", "cv2"])


@pytest.mark.parametrize("cuts", [(1.32, 0.49), (1.1, 0.3), (2.0, 1.0)])
def test_router_rule_is_the_classification_rule(cuts):
    f = _grid()
    rule = PatternRule(cuts[0], cuts[1])
    router = rule.patterns(f)
    assert router.name == "pattern"
    pd.testing.assert_series_equal(router, demand_patterns(f["adi"], f["cv2"], *cuts), check_names=False)
    assert set(router) <= set(PATTERNS)
    # The quadrants by hand at the default cut-offs (a value at a cut-off is on the sparse/erratic side).
    at = dict(zip(zip(f["adi"], f["cv2"], strict=True), demand_patterns(f["adi"], f["cv2"]), strict=True))
    assert at[(1.31, 0.48)] == "smooth" and at[(1.31, 0.49)] == "erratic"
    assert at[(1.32, 0.48)] == "intermittent" and at[(1.32, 0.49)] == "lumpy"


def test_xyz_rule_is_one_rule():
    cv = pd.Series([0.0, 0.5, 0.51, 1.0, 1.01, np.inf, np.nan], index=list("abcdefg"))
    assert xyz_classes(cv).tolist() == ["X", "X", "Y", "Y", "Z", "Z", "Z"]
    assert xyz_codes(cv).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert PatternRule(xyz_cutoffs=(0.2, 0.6)).xyz(cv).tolist() == xyz_codes(cv, (0.2, 0.6)).tolist()
    assert "XYZ"[int(xyz_codes(pd.Series([0.7]), (0.2, 0.6))[0])] == xyz_classes(pd.Series([0.7]), (0.2, 0.6))[0]


def test_registry_names_are_one_constant():
    from stockml.settings import Settings
    from training.automl.tune_router import tune_router
    from training.registry import mlflow_registry as reg

    assert (ROUTER_MODEL, LSTM_MODEL, RL_AGENT_MODEL) == ("stockml-router", "stockml-lstm", "stockml-rl-agent")
    assert reg.MODEL_NAME == reg.EXPERIMENT == ROUTER_MODEL
    assert Settings.model_fields["mlflow_experiment"].default == ROUTER_MODEL
    assert inspect.signature(tune_router).parameters["study_name"].default == ROUTER_MODEL
    assert inspect.signature(reg.promote).parameters["name"].default == ROUTER_MODEL


def test_registry_provenance_takes_values_not_the_environment(monkeypatch):
    from training.registry import mlflow_registry as reg

    monkeypatch.setenv("STOCKML_GIT_COMMIT", "from-env")
    monkeypatch.setenv("STOCKML_ACTOR", "from-env")
    assert reg.git_commit("cafe") == "cafe" and reg.actor("bot") == "bot"
    assert reg.git_commit() != "from-env" and reg.actor() != "from-env"
