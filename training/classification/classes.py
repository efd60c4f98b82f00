"""ABC (revenue), XYZ (variability) and Syntetos-Boylan demand-pattern classes."""

from __future__ import annotations

import numpy as np
import pandas as pd


def abc_classes(revenue: pd.Series, cutoffs: tuple[float, float] = (0.80, 0.95)) -> pd.Series:
    """A: the SKUs making the first 80 % of revenue, B: up to 95 %, C: the rest."""
    order = revenue.sort_values(ascending=False)
    total = order.sum()
    cum = order.cumsum() / total if total > 0 else order * 0 + 1.0
    eps = 1e-9
    labels = np.where(cum <= cutoffs[0] + eps, "A", np.where(cum <= cutoffs[1] + eps, "B", "C"))
    if len(labels) and total > 0:
        labels[0] = "A"  # the best seller is A even when it alone makes more than the A share
    return pd.Series(labels, index=order.index).reindex(revenue.index)


XYZ = ("X", "Y", "Z")
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")


def xyz_codes(cv: pd.Series | np.ndarray, cutoffs: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """The XYZ rule as codes 0 (X: CV ≤ lo), 1 (Y: CV ≤ hi), 2 (Z: above, or CV undefined)."""
    cv = np.asarray(cv, dtype=float)
    return np.select([cv <= cutoffs[0], cv <= cutoffs[1]], [0.0, 1.0], 2.0)


def xyz_classes(cv: pd.Series, cutoffs: tuple[float, float] = (0.5, 1.0)) -> pd.Series:
    """X: stable (CV ≤ 0.5), Y: variable (≤ 1.0), Z: erratic, by coefficient of variation."""
    return pd.Series(np.asarray(XYZ)[xyz_codes(cv, cutoffs).astype(int)], index=cv.index)


def demand_patterns(adi: pd.Series, cv2: pd.Series, adi_cut: float = 1.32, cv2_cut: float = 0.49) -> pd.Series:
    """Syntetos-Boylan-Croston quadrants: smooth, erratic, intermittent, lumpy.

    Frequent demand is ADI < ``adi_cut``, stable sizes CV² < ``cv2_cut`` (at a cut-off: the
    intermittent/erratic side). The one implementation: classification and the router's
    :class:`~training.router.train.PatternRule` both call it.
    """
    frequent = adi < adi_cut
    stable = cv2 < cv2_cut
    labels = np.select(
        [frequent & stable, frequent & ~stable, ~frequent & stable], ["smooth", "erratic", "intermittent"], "lumpy"
    )
    return pd.Series(labels, index=adi.index)
