"""Router mechanics: both modes train, weights are distributions, explanations name features.

How well the router routes is measured in bench/ (not asserted here); these tests check that it
learns an obvious rule: TSB wins on intermittent SKUs, AutoETS on the others.
"""

import numpy as np
import pandas as pd
import pytest

from training.router.model import ForecastRouter
from training.router.train import window_errors


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 300
    intermittent = rng.random(n) < 0.5
    feats = pd.DataFrame(
        {
            "adi": np.where(intermittent, rng.uniform(1.5, 5, n), rng.uniform(1, 1.2, n)),
            "zero_share": np.where(intermittent, rng.uniform(0.4, 0.9, n), rng.uniform(0, 0.1, n)),
            "cv2": rng.uniform(0.1, 2, n),
            "noise": rng.normal(size=n),
        },
        index=[f"S{i}" for i in range(n)],
    )
    base = rng.uniform(0.8, 1.2, n)
    errors = pd.DataFrame(
        {
            "TSB": base * np.where(intermittent, 0.7, 1.3),
            "AutoETS": base * np.where(intermittent, 1.3, 0.7),
            "Naive": base * 1.5,
        },
        index=feats.index,
    )
    return feats, errors, intermittent


@pytest.mark.parametrize("mode", ["select", "combine"])
def test_router_learns_the_obvious_rule(data, mode):
    feats, errors, intermittent = data
    router = ForecastRouter(mode=mode, n_estimators=60).fit(feats.iloc[:200], errors.iloc[:200])
    w = router.weights(feats.iloc[200:])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    chosen = w.idxmax(axis=1)
    expected = np.where(intermittent[200:], "TSB", "AutoETS")
    assert (chosen.to_numpy() == expected).mean() > 0.9
    routed = router.expected_error(feats.iloc[200:], errors.iloc[200:]).mean()
    assert routed < errors.iloc[200:].mean().min()  # better than any single method


def test_explanations_name_the_deciding_features(data):
    feats, errors, intermittent = data
    router = ForecastRouter(n_estimators=60).fit(feats, errors)
    ex = router.explain(feats.iloc[:20])
    assert set(ex.columns) == {"method", "confidence", "explanation"}
    assert ex["confidence"].between(0, 1).all()
    row = ex.loc[feats.index[int(np.argmax(intermittent))]]
    assert row["method"] == "TSB" and row["explanation"].startswith("TSB (confidence")
    assert "ADI" in row["explanation"] or "zero weeks" in row["explanation"]


def test_bad_arguments_fail_clearly(data):
    feats, errors, _ = data
    with pytest.raises(ValueError, match="mode"):
        ForecastRouter(mode="vote").fit(feats, errors)
    with pytest.raises(ValueError, match="at least 10"):
        ForecastRouter().fit(feats.iloc[:5], errors.iloc[:5])
    with pytest.raises(ValueError, match="features missing"):
        ForecastRouter(n_estimators=5).fit(feats, errors).weights(feats.drop(columns="adi"))


def test_error_table_falls_back_to_mae_where_mase_is_undefined():
    errors = pd.DataFrame(
        {
            "unique_id": ["a", "a", "b", "b"],
            "cutoff": pd.to_datetime(["2026-01-05"] * 4),
            "method": ["X", "Y", "X", "Y"],
            "mase": [1.0, 2.0, np.nan, np.nan],
            "mae": [1.0, 2.0, 3.0, 6.0],
        }
    )
    m = window_errors(errors).droplevel("cutoff")
    assert m.loc["a"].tolist() == [1.0, 2.0] and m.loc["b"].tolist() == [1.0, 2.0]
