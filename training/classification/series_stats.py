"""Per-SKU descriptive statistics of weekly demand, vectorised across SKUs.

Statistics that describe *how* a product sells are computed over its active life (first to
last sale), so a discontinued product's trailing zeros do not make it look intermittent.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd


def series_arrays(demand: pd.DataFrame) -> dict[str, np.ndarray]:
    """Group the long demand frame into one numpy array per SKU (sorted by ds)."""
    d = demand.sort_values(["unique_id", "ds"])
    ids, starts = np.unique(d["unique_id"].to_numpy(), return_index=True)
    values = np.split(d["y"].to_numpy(dtype=float), starts[1:])
    return dict(zip(ids.tolist(), values, strict=True))


def _active(y: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(y > 0)
    return y[nz[0] : nz[-1] + 1] if nz.size else y[:0]


def padded_matrix(demand: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(ids, Y) with Y[i, -len_i:] = series i and NaN before it starts."""
    d = demand.sort_values(["unique_id", "ds"])
    ids, counts = np.unique(d["unique_id"].to_numpy(), return_counts=True)
    width = int(counts.max())
    y = np.full((len(ids), width), np.nan)
    values = d["y"].to_numpy(dtype=float)
    rows = np.repeat(np.arange(len(ids)), counts)
    cols = np.concatenate([np.arange(width - c, width) for c in counts])
    y[rows, cols] = values
    return ids, y


def intermittency_matrix(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Syntetos-Boylan per row of a padded matrix: ADI (mean interval between sales, the
    series length with fewer than two sales) and CV² of non-zero sizes (0 with fewer than two)."""
    t = np.arange(y.shape[1])
    pos = np.where(y > 0, t, np.nan)
    n_sales = np.sum(y > 0, axis=1)
    span = np.nanmax(pos, axis=1, initial=-1) - np.nanmin(np.where(np.isnan(pos), np.inf, pos), axis=1)
    length = np.sum(~np.isnan(y), axis=1)
    adi = np.where(n_sales > 1, span / np.maximum(n_sales - 1, 1), length)
    sizes = np.where(y > 0, y, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows with < 2 sales: CV² is defined as 0 below
        m = np.nanmean(sizes, axis=1)
        cv2 = np.nanvar(sizes, axis=1, ddof=1) / m**2
    return adi.astype(float), np.where(n_sales > 1, np.nan_to_num(cv2), 0.0)


def level_shift(act: np.ndarray, max_segment: int = 26) -> float:
    """Strongest sustained step change: the largest two-sample t statistic over split points.

    Split points run over the active life with at least ``max_segment`` weeks (a quarter of
    the life for short series) on each side;
    the difference of means is scaled by the pooled within-segment spread, so a lumpy
    product's noise or a gentle trend scores low and a step change scores high.
    """
    n = len(act)
    min_segment = max(8, min(max_segment, n // 4))
    if n < 2 * min_segment:
        return 0.0
    c1 = np.concatenate([[0.0], np.cumsum(act)])
    c2 = np.concatenate([[0.0], np.cumsum(act**2)])
    k = np.arange(min_segment, n - min_segment + 1)
    m1, m2 = c1[k] / k, (c1[-1] - c1[k]) / (n - k)
    ss1 = c2[k] - k * m1**2
    ss2 = (c2[-1] - c2[k]) - (n - k) * m2**2
    pooled = np.sqrt(np.maximum(ss1 + ss2, 0) / (n - 2))
    t = np.abs(m2 - m1) / (pooled * np.sqrt(1 / k + 1 / (n - k)) + 1e-9)
    return float(t.max())


def series_stats(demand: pd.DataFrame, recent_weeks: int = 52) -> pd.DataFrame:
    """ADI, CV², zero share, level, XYZ variability and anomaly signals for every SKU."""
    _, matrix = padded_matrix(demand)  # rows in the same (sorted) SKU order as series_arrays
    adis, cv2s = intermittency_matrix(matrix)
    rows = []
    for (sku, y), adi, cv2 in zip(series_arrays(demand).items(), adis, cv2s, strict=True):
        act = _active(y)
        recent = y[-recent_weeks:]
        rmean = recent.mean()
        nzs = act[act > 0]
        high = float(np.quantile(nzs, 0.75)) if nzs.size else 0.0
        rows.append(
            {
                "sku": sku,
                "n_weeks": len(y),
                "active_weeks": len(act),
                "mean": float(y.mean()),
                "recent_mean": float(rmean),
                "recent_cv": float(recent.std() / rmean) if rmean > 0 else np.inf,
                "zero_share": float((y == 0).mean()),
                "adi": adi,
                "cv2": cv2,
                "spike_ratio": float(nzs.max() / high) if high > 0 else 0.0,
                "level_shift": level_shift(act),
                "trailing_zero_weeks": int(len(y) - 1 - np.flatnonzero(y > 0)[-1]) if (y > 0).any() else len(y),
            }
        )
    return pd.DataFrame(rows).set_index("sku")
