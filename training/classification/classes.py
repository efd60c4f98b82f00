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


def xyz_classes(cv: pd.Series, cutoffs: tuple[float, float] = (0.5, 1.0)) -> pd.Series:
    """X: stable (CV ≤ 0.5), Y: variable (≤ 1.0), Z: erratic, by coefficient of variation."""
    return pd.Series(np.where(cv <= cutoffs[0], "X", np.where(cv <= cutoffs[1], "Y", "Z")), index=cv.index)


def demand_patterns(adi: pd.Series, cv2: pd.Series, adi_cut: float = 1.32, cv2_cut: float = 0.49) -> pd.Series:
    """Syntetos-Boylan-Croston quadrants: smooth, erratic, intermittent, lumpy."""
    frequent = adi < adi_cut
    stable = cv2 < cv2_cut
    labels = np.select(
        [frequent & stable, frequent & ~stable, ~frequent & stable], ["smooth", "erratic", "intermittent"], "lumpy"
    )
    return pd.Series(labels, index=adi.index)
