"""Shifts injected into a weekly demand frame: what the drift checks must see, and a control.

Why: monitoring's detection and false-alarm rates are only figures when the shift is known. Seeded,
so a test or the benchmark can repeat a run exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("level", "season")


def inject_shift(
    demand: pd.DataFrame, start: pd.Timestamp, kind: str, size: float, share: float, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """``demand`` (``unique_id, ds, y``) with a shift from week ``start`` on in a seeded ``share`` of
    the products; returns the frame and the shifted products.

    ``level``: demand times ``1 + size`` (+30 % is ``size=0.3``). ``season``: a new yearly shape,
    demand times ``1 + size * sin(2 pi week / 52 + phase)`` with a random phase per product (the
    product's own seasons stay, a new one is laid over them). Quantities stay whole units >= 0."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    rng = np.random.default_rng(seed)
    ids = np.sort(demand["unique_id"].unique())
    chosen = sorted(rng.choice(ids, round(share * len(ids)), replace=False).tolist()) if len(ids) else []
    out = demand.copy()
    rows = out["unique_id"].isin(chosen) & (pd.to_datetime(out["ds"]) >= pd.Timestamp(start))
    y = out.loc[rows, "y"].to_numpy(float)
    if kind == "level":
        factor = np.full(len(y), 1.0 + size)
    else:
        phases = dict(zip(chosen, rng.uniform(0, 2 * np.pi, len(chosen)), strict=True))
        weeks = ((pd.to_datetime(out.loc[rows, "ds"]) - pd.Timestamp("2000-01-03")).dt.days // 7).to_numpy()
        phase = out.loc[rows, "unique_id"].map(phases).to_numpy(float)
        factor = 1.0 + size * np.sin(2 * np.pi * weeks / 52 + phase)
    out.loc[rows, "y"] = np.maximum(np.round(y * factor), 0.0)
    return out, [str(c) for c in chosen]
