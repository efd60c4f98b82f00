"""M4 metrics pinned against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from training.forecasting.metrics import (
    bias,
    insample_scales,
    mae,
    mase,
    mase_scale,
    mean_mase,
    owa,
    pinball,
    pointwise_errors,
    rmse,
    smape,
    summarise,
)

Y = np.array([10.0, 20.0, 0.0])
F = np.array([12.0, 15.0, 0.0])
TRAIN = np.array([5.0, 7.0, 6.0, 10.0])  # |diffs| = 2, 1, 4 → scale 7/3


def test_smape_by_hand():
    # 200/3 * (2/22 + 5/35 + 0) ; the 0/0 term counts as zero
    assert smape(Y, F) == pytest.approx(200 / 3 * (2 / 22 + 5 / 35))


def test_mase_by_hand():
    assert mase_scale(TRAIN) == pytest.approx(7 / 3)
    assert mase(Y, F, TRAIN) == pytest.approx((7 / 3) / (7 / 3))  # MAE = (2+5+0)/3
    assert mase_scale(TRAIN, m=2) == pytest.approx((1 + 3) / 2)
    assert math.isnan(mase(Y, F, np.array([3.0, 3.0, 3.0])))  # constant sample: undefined


def test_other_metrics_by_hand():
    assert mae(Y, F) == pytest.approx(7 / 3)
    assert rmse(Y, F) == pytest.approx(math.sqrt((4 + 25) / 3))
    assert bias(Y, F) == pytest.approx((2 - 5 + 0) / 3)
    # q=0.9: errors y-f = -2, 5, 0 → max(0.9e, -0.1e) = 0.2, 4.5, 0
    assert pinball(Y, F, 0.9) == pytest.approx((0.2 + 4.5) / 3)
    assert owa(10, 2, 20, 4) == pytest.approx(0.5)


def test_frame_metrics_match_scalar_ones_and_owa_uses_naive2():
    train = pd.DataFrame({"unique_id": "a", "ds": range(4), "y": TRAIN})
    scales = insample_scales(train)
    rows = []
    for method, f in (("Naive2", np.array([10.0, 10.0, 10.0])), ("Good", F)):
        rows.append(pd.DataFrame({"unique_id": "a", "ds": [4, 5, 6], "y": Y, "yhat": f, "method": method}))
    errors = pointwise_errors(pd.concat(rows), scales)
    good = errors.set_index("method").loc["Good"]
    assert good["smape"] == pytest.approx(smape(Y, F))
    assert good["mase"] == pytest.approx(mase(Y, F, TRAIN))
    table = summarise(errors)
    assert table.loc["Naive2", "owa"] == pytest.approx(1.0)
    n2_smape, n2_mase = smape(Y, np.full(3, 10.0)), mase(Y, np.full(3, 10.0), TRAIN)
    assert table.loc["Good", "owa"] == pytest.approx(owa(smape(Y, F), mase(Y, F, TRAIN), n2_smape, n2_mase))


def test_mean_mase_scales_each_series_by_its_history_and_skips_flat_ones():
    history = pd.DataFrame(
        {"unique_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 2, "ds": [1, 2, 3] * 2 + [1, 2], "y": [1, 3, 5, 2, 2, 4, 7, 7]}
    )
    scored = pd.DataFrame({"unique_id": ["a", "a", "b", "c"], "y": [6, 8, 4, 7], "yhat": [5, 5, 3, 1]})
    # a: MAE 2 / scale 2 = 1; b: MAE 1 / scale mean(|0|, |2|) = 1; c: flat history, left out
    assert mean_mase(scored, history) == pytest.approx(1.0)
    assert np.isnan(mean_mase(scored[scored["unique_id"] == "c"], history))
