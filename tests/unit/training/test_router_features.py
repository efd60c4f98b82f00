"""Router series features: vectorised values agree with per-series definitions."""

import numpy as np
import pandas as pd
import pytest

from training.router.features import padded_matrix, series_features


def _intermittency(y: np.ndarray) -> tuple[float, float]:
    """Syntetos-Boylan by its definition, one series at a time (the reference)."""
    nz = np.flatnonzero(y > 0)
    adi = (nz[-1] - nz[0]) / (nz.size - 1) if nz.size > 1 else float(len(y))
    cv2 = y[nz].var(ddof=1) / y[nz].mean() ** 2 if nz.size > 1 else 0.0
    return adi, cv2


def _frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.concat(
        pd.DataFrame({"unique_id": k, "ds": pd.date_range(end="2026-11-16", periods=len(v), freq="W-MON"), "y": v})
        for k, v in series.items()
    )


@pytest.fixture(scope="module")
def feats():
    rng = np.random.default_rng(0)
    t = np.arange(156)
    series = {
        "seasonal": 50 + 30 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 2, 156),
        "trend": 10 + 0.5 * t + rng.normal(0, 0.5, 156),
        "noise": rng.normal(20, 5, 156).clip(0),
        "lumpy": (rng.random(156) < 0.2) * rng.gamma(0.7, 30, 156),
        "short": np.r_[0.0, 3.0, 0.0, 0.0, 5.0, 1.0] * 1.0,
    }
    return series, series_features(_frame(series))


def test_padded_matrix_is_right_aligned():
    ids, y = padded_matrix(_frame({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([4.0])}))
    assert list(ids) == ["a", "b"]
    np.testing.assert_array_equal(y[0], [1, 2, 3])
    assert np.isnan(y[1, :2]).all() and y[1, 2] == 4


def test_at_least_twenty_finite_features(feats):
    _, f = feats
    assert f.shape[1] >= 20
    assert np.isfinite(f.to_numpy()).all()


def test_features_match_their_definitions(feats):
    series, f = feats
    for sku, y in series.items():
        adi, cv2 = _intermittency(y)
        assert f.loc[sku, "adi"] == pytest.approx(adi)
        assert f.loc[sku, "cv2"] == pytest.approx(cv2)
        assert f.loc[sku, "zero_share"] == pytest.approx(np.mean(y == 0))
        assert f.loc[sku, "length"] == len(y)
    y = series["noise"]
    x = y - y.mean()
    assert f.loc["noise", "acf1"] == pytest.approx(np.sum(x[1:] * x[:-1]) / np.sum(x**2))


def test_features_separate_the_shapes(feats):
    _, f = feats
    assert f.loc["seasonal", "seasonal_strength"] > 0.8 > f.loc["noise", "seasonal_strength"] + 0.5
    assert f.loc["trend", "trend_strength"] > 0.95 and f.loc["noise", "trend_strength"] < 0.1
    assert f.loc["lumpy", "adi"] > 2 and f.loc["lumpy", "zero_share"] > 0.6
    assert f.loc["seasonal", "spectral_entropy"] < f.loc["noise", "spectral_entropy"]
