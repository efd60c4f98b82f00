"""Series features for the forecasting router, computed on a padded matrix across all SKUs.

Why a matrix: the router scores thousands of products at every training and serving call, so
features are numpy reductions over one (SKUs × weeks) array, right-aligned (the last week of
every series in the last column, NaN before a series starts), instead of a Python loop per SKU.

Features describe what makes one method win over another: how often and how regularly the
product sells (ADI, CV², zero share), how it moves (trend, seasonality, autocorrelation,
spikes, changing level or variance), how predictable it is (spectral entropy), and, when
given, what the business knows (price, cost, lead time, classification results).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from training.classification.series_stats import intermittency_matrix, padded_matrix

WINDOW = 13  # a quarter: the tile for stability and lumpiness


@contextmanager
def _quiet() -> Iterator[None]:
    """All-NaN rows (a SKU with no full cycle, no sale) are expected: silence numpy's warnings."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _autocorr(y: np.ndarray, lag: int) -> np.ndarray:
    """Autocorrelation at ``lag`` of each row, ignoring NaN padding."""
    mu = np.nanmean(y, axis=1, keepdims=True)
    x = y - mu
    if lag >= y.shape[1]:
        return np.full(len(y), np.nan)
    num = np.nansum(x[:, lag:] * x[:, :-lag], axis=1)
    den = np.nansum(x**2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    enough = np.sum(~np.isnan(y), axis=1) > lag + 2
    return np.where(enough & np.isfinite(r), r, 0.0)


def _tiles(y: np.ndarray, window: int) -> np.ndarray:
    """Non-overlapping windows from the end: shape (SKUs, tiles, window)."""
    n_tiles = y.shape[1] // window
    return y[:, y.shape[1] - n_tiles * window :].reshape(len(y), n_tiles, window)


def _trend_strength(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R² of a straight line through each series, and its slope relative to the mean level."""
    t = np.where(np.isnan(y), np.nan, np.arange(y.shape[1], dtype=float))
    tm, ym = np.nanmean(t, axis=1, keepdims=True), np.nanmean(y, axis=1, keepdims=True)
    sxy = np.nansum((t - tm) * (y - ym), axis=1)
    sxx = np.nansum((t - tm) ** 2, axis=1)
    syy = np.nansum((y - ym) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = sxy**2 / (sxx * syy)
        slope = sxy / sxx / ym[:, 0]
    return np.nan_to_num(r2), np.nan_to_num(slope)


def _seasonal_strength(y: np.ndarray, m: int) -> np.ndarray:
    """Share of variance explained by the mean profile over positions in the cycle (0 if < 2 cycles)."""
    width = (y.shape[1] // m) * m
    if width < 2 * m:
        return np.zeros(len(y))
    cycles = y[:, -width:].reshape(len(y), width // m, m)
    with _quiet():
        profile = np.nanmean(cycles, axis=1, keepdims=True)
        v_all = np.nanvar(cycles.reshape(len(y), -1), axis=1)
        v_res = np.nanvar((cycles - profile).reshape(len(y), -1), axis=1)
        full_cycles = np.sum(np.all(~np.isnan(cycles), axis=2), axis=1)
        # With k cycles the mean profile soaks up 1/k of pure noise: correct for it, so white noise scores ~0.
        k = np.maximum(full_cycles, 2)
        s = 1 - v_res / v_all * k / (k - 1)
    return np.where((full_cycles >= 2) & np.isfinite(s), np.clip(s, 0, 1), 0.0)


def _spectral_entropy(y: np.ndarray, n: int = 104) -> np.ndarray:
    """Normalised Shannon entropy of the periodogram of the last ``n`` weeks (1 = white noise)."""
    tail = y[:, -n:]
    mu = np.nanmean(tail, axis=1, keepdims=True)
    x = np.where(np.isnan(tail), 0.0, tail - mu)
    power = np.abs(np.fft.rfft(x, axis=1))[:, 1:] ** 2
    total = power.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = power / total
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / np.log(power.shape[1])
    return np.where(total[:, 0] > 0, h, 1.0)


def series_features(
    demand: pd.DataFrame,
    season_length: int = 52,
    products: pd.DataFrame | None = None,
    classes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """At least 20 features per SKU (index ``unique_id``), ready for the router's XGBoost model."""
    ids, y = padded_matrix(demand)
    length = np.sum(~np.isnan(y), axis=1)
    mean = np.nanmean(y, axis=1)
    std = np.nanstd(y, axis=1)
    adi, cv2 = intermittency_matrix(y)
    r2, slope = _trend_strength(y)
    tiles = _tiles(y, WINDOW)
    with _quiet():
        tile_means = np.nanmean(tiles, axis=2)
        tile_vars = np.nanvar(tiles, axis=2)
        stability = np.nanvar(tile_means, axis=1) / std**2
        lumpiness = np.nanvar(tile_vars, axis=1) / std**4
        recent = np.nanmean(y[:, -WINDOW:], axis=1)
        diffs = np.diff(y, axis=1)
        nz = np.where(y > 0, y, np.nan)
        f = pd.DataFrame(
            {
                "length": length,
                "log_mean": np.log1p(mean),
                "cv": np.where(mean > 0, std / np.where(mean > 0, mean, 1), 0.0),
                "adi": adi,
                "cv2": cv2,
                "zero_share": np.nansum(y == 0, axis=1) / length,
                "recent_zero_share": np.nanmean(
                    np.where(np.isnan(y[:, -WINDOW:]), np.nan, y[:, -WINDOW:] == 0), axis=1
                ),
                "trend_strength": r2,
                "trend_slope": slope,
                "seasonal_strength": _seasonal_strength(y, season_length) if season_length > 1 else 0.0,
                "acf1": _autocorr(y, 1),
                "acf_seasonal": _autocorr(y, season_length) if season_length > 1 else 0.0,
                "diff_acf1": _autocorr(diffs, 1),
                "spikiness": np.where(
                    std > 0, (np.nanmax(y, axis=1) - np.nanmedian(y, axis=1)) / np.where(std > 0, std, 1), 0.0
                ),
                "max_over_nonzero_mean": np.nan_to_num(np.nanmax(y, axis=1) / np.nanmean(nz, axis=1)),
                "stability": np.nan_to_num(stability),
                "lumpiness": np.nan_to_num(lumpiness),
                "recent_level_ratio": np.where(mean > 0, recent / np.where(mean > 0, mean, 1), 0.0),
                "spectral_entropy": _spectral_entropy(y),
                "last_value_share": np.nan_to_num(y[:, -1] / np.nanmax(nz, axis=1)),
            },
            index=pd.Index(ids, name="unique_id"),
        )
    if products is not None:
        p = products.set_index("sku").reindex(f.index)
        for col in ("unit_price", "unit_cost", "lead_time_weeks"):
            f[col] = pd.to_numeric(p[col], errors="coerce")
    if classes is not None:
        c = classes.reindex(f.index)
        f["abc"] = c["abc"].map({"A": 0, "B": 1, "C": 2})
        f["xyz"] = c["xyz"].map({"X": 0, "Y": 1, "Z": 2})
        for pattern in ("smooth", "erratic", "intermittent", "lumpy"):
            f[f"is_{pattern}"] = (c["pattern"] == pattern).astype(float)
        f["kmeans_cluster"] = c["kmeans_cluster"]
        f["anomaly_score"] = c["anomaly_score"]
    return f
