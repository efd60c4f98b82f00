"""Per-SKU descriptive statistics of weekly demand, vectorised across SKUs.

Statistics that describe *how* a product sells are computed over its active life (first to
last sale), so a discontinued product's trailing zeros do not make it look intermittent.
"""

from __future__ import annotations

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


def intermittency(y: np.ndarray) -> tuple[float, float]:
    """ADI (mean interval between demands) and CV² of non-zero demand sizes (Syntetos-Boylan)."""
    nz = np.flatnonzero(y > 0)
    if nz.size == 0:
        return float(len(y)), 0.0
    adi = float((nz[-1] - nz[0]) / (nz.size - 1)) if nz.size > 1 else float(len(y))
    sizes = y[nz]
    mean = sizes.mean()
    cv2 = float(sizes.var(ddof=1) / mean**2) if nz.size > 1 and mean > 0 else 0.0
    return adi, cv2


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
    rows = []
    for sku, y in series_arrays(demand).items():
        act = _active(y)
        adi, cv2 = intermittency(y)
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
