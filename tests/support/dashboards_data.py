"""A workspace populated the way monitoring runs populate it, from real pipeline outputs.

The demo catalogue's weekly demand and a real backtest of the zoo (the ``router_data`` fixture):
each backtest window becomes one monitoring date with a drift report (the window's weeks against
the weeks before it), the forecast error by demand pattern of one method over that window, and a
bandit split. Used by the browser test of the Evidently UI and by the workspace tests.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from monitoring import workspace as ws
from training.classification.classes import demand_patterns
from training.classification.series_stats import series_stats

METHOD = "SES"


def patterns_of(demand: pd.DataFrame) -> pd.Series:
    """Syntetos-Boylan pattern per SKU, as the pipeline's classification computes it."""
    stats = series_stats(demand)
    return demand_patterns(stats["adi"], stats["cv2"])


def error_by_pattern(
    errors: pd.DataFrame, patterns: pd.Series, method: str = METHOD
) -> dict[pd.Timestamp, pd.DataFrame]:
    """Per backtest cutoff, ``method``'s mean MASE and MAE per demand pattern (columns pattern, mase, mae)."""
    e = errors[errors["method"] == method].assign(pattern=lambda d: d["unique_id"].map(patterns))
    out = {}
    for cutoff, part in e.groupby("cutoff"):
        out[pd.Timestamp(cutoff)] = part.groupby("pattern", as_index=False)[["mase", "mae"]].mean()
    return out


def populate(path: Path, router_data: dict, horizon: int = 8) -> list[pd.Timestamp]:
    """Store drift, quality and bandit snapshots for every backtest window; the monitoring dates."""
    demand, errors = router_data["demand"], router_data["backtest"].errors
    per_window = error_by_pattern(errors, patterns_of(demand))
    dates = sorted(per_window)
    for i, cutoff in enumerate(dates):
        when = cutoff + pd.Timedelta(weeks=horizon)
        current = demand[(demand["ds"] > cutoff) & (demand["ds"] <= when)]
        reference = demand[demand["ds"] <= cutoff]
        ws.add_drift_snapshot(path, ws.demand_drift_snapshot(reference, current), when)
        ws.add_quality_snapshot(path, per_window[cutoff], when)
        ws.add_bandit_snapshot(path, {"champion": 90 - 20 * i, "challenger": 10 + 20 * i}, when)
    return [d + pd.Timedelta(weeks=horizon) for d in dates]
