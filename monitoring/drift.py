"""Data drift and forecast-error drift, judged with Evidently 0.7 on one row per product.

What is compared. Each product becomes one row of *year-over-year* features of a window of recent
weeks: its level, variability and intermittency in the window against the same calendar weeks a
year earlier (:func:`drift_features`). Comparing like with like is what keeps an ordinary season
out: a fungicide that sells four times more in its wet season does so every year, so its
year-over-year level ratio stays near 1 whatever the season, while a product whose level moved
by 30 % shows a ratio of 1.3. The reference rows are the same features at the end of the
champion's training window, the current rows at the latest week; Evidently then tests, column by
column, whether the distribution over products moved (:func:`data_drift`).

Why a distribution test over products works for a shift in a share of them: with a change in 20 %
of the catalogue, 20 % of the current rows move away from the reference's mass near "no change",
which a two-sample Kolmogorov-Smirnov test over hundreds of products sees. The test is chosen
explicitly (K-S p-value for every numeric column, at ``threshold``) rather than by Evidently's
sample-size rule, which switches to a Wasserstein distance above 1,000 rows and would make the
verdict change with the catalogue's size. The dataset verdict is the share of drifted columns
against ``drift_share``.

:func:`residual_drift` does the same for the pooled forecast errors (scaled per product by the
shared MASE scale before they reach it): the errors of the weeks before the window against those
inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ("level_yoy", "spread_yoy", "zero_share_yoy", "shape_yoy")
SEASON_LENGTH = 52
EPS = 0.5  # half a unit a week: keeps log ratios finite for products without sales in a window
DEFAULT_THRESHOLD = 0.01  # per-column K-S p-value below which a column has drifted
DEFAULT_DRIFT_SHARE = 0.25  # one of the four features drifting is a drifted catalogue


@dataclass(frozen=True)
class DriftResult:
    """The dataset verdict, the per-column details and the Evidently snapshot they came from."""

    drifted: bool
    share: float
    drifted_columns: list[str]
    columns: dict[str, dict[str, Any]]
    n_reference: int
    n_current: int
    drift_share: float
    snapshot: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "share": self.share,
            "drifted_columns": list(self.drifted_columns),
            "columns": self.columns,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drift_share": self.drift_share,
        }


def _windows(demand: pd.DataFrame, end: pd.Timestamp, weeks: int, lag: int) -> np.ndarray:
    """Demand of every product over the ``weeks`` weeks ending ``lag`` weeks before ``end``
    (rows: products in sorted order; a missing week is 0: no sale)."""
    stop = end - pd.Timedelta(weeks=lag)
    index = pd.date_range(end=stop, periods=weeks, freq=pd.DateOffset(weeks=1))
    wide = demand.pivot_table(index="unique_id", columns="ds", values="y", aggfunc="sum")
    return wide.reindex(columns=index).fillna(0.0).to_numpy(float)


def drift_features(
    demand: pd.DataFrame,
    end: pd.Timestamp | None = None,
    window_weeks: int = 13,
    season_length: int = SEASON_LENGTH,
) -> pd.DataFrame:
    """Year-over-year features of the ``window_weeks`` weeks ending at ``end`` (default: the last week).

    One row per product (index ``unique_id``): ``level_yoy`` the log ratio of the window's mean demand
    to the same weeks' a season earlier, ``spread_yoy`` the log ratio of their standard deviations,
    ``zero_share_yoy`` the change in the share of weeks without demand (intermittency), and
    ``shape_yoy`` one minus the correlation of the window's week-by-week profile with the year-earlier
    one (a new seasonal shape). Products without a full season before the window are left out: there
    is nothing to compare them with.
    """
    if window_weeks < 2:
        raise ValueError(f"window_weeks must be >= 2, got {window_weeks}")
    missing = {"unique_id", "ds", "y"} - set(demand.columns)
    if missing:
        raise ValueError(f"demand lacks columns {sorted(missing)}")
    demand = demand.assign(ds=pd.to_datetime(demand["ds"]))
    end = pd.Timestamp(end) if end is not None else demand["ds"].max()
    first = demand.groupby("unique_id")["ds"].min()
    keep = first[first <= end - pd.Timedelta(weeks=season_length + window_weeks - 1)].index
    demand = demand[demand["unique_id"].isin(keep) & (demand["ds"] <= end)]
    ids = np.sort(demand["unique_id"].unique())
    if len(ids) == 0:
        return pd.DataFrame(columns=list(FEATURES), index=pd.Index([], name="unique_id"))
    now = _windows(demand, end, window_weeks, 0)
    before = _windows(demand, end, window_weeks, season_length)
    n = window_weeks
    # Welch's t of the level change: standardised per product, so a smooth and a lumpy product's
    # rows have the same spread when nothing changed (what makes a shift in a share of them visible)
    se = np.sqrt((now.var(1, ddof=1) + before.var(1, ddof=1)) / n + EPS / n)
    level = (now.mean(1) - before.mean(1)) / se
    # the within-window slope change (a new seasonal shape turns the weeks' trend), standardised alike
    t = np.arange(n) - (n - 1) / 2
    slope = lambda y: (y * t).sum(1) / (t * t).sum()  # noqa: E731
    resid = np.concatenate([now - now.mean(1, keepdims=True) - slope(now)[:, None] * t,
                            before - before.mean(1, keepdims=True) - slope(before)[:, None] * t], axis=1)  # fmt: skip
    slope_se = np.sqrt(2 * (resid**2).sum(1) / (2 * n - 4) / (t * t).sum() + EPS / (t * t).sum())
    shape = (slope(now) - slope(before)) / slope_se
    spread = np.log((now.std(1) + EPS) / (before.std(1) + EPS))
    zeros = (now == 0).mean(1) - (before == 0).mean(1)
    frame = pd.DataFrame(
        {"level_yoy": level, "spread_yoy": spread, "zero_share_yoy": zeros, "shape_yoy": shape},
        index=pd.Index(ids, name="unique_id"),
    )
    return frame


def reference_features(
    demand: pd.DataFrame, end: pd.Timestamp, window_weeks: int = 13, season_length: int = SEASON_LENGTH
) -> pd.DataFrame:
    """The reference rows: :func:`drift_features` at the end of the champion's training window."""
    return drift_features(demand, end, window_weeks, season_length)


SMALL_SAMPLE = 30


def numeric_method(rows: int) -> str:
    """Evidently's test for the numeric feature columns: Welch's t-test from ``SMALL_SAMPLE`` products on
    (the features are changes whose mean is the same at both ends when nothing moved, so a shift in a
    share of the products is a shift of the mean; the t-test sees it where a distribution test over
    hundreds of rows does not), Mann-Whitney below (no normal approximation to lean on)."""
    return "t_test" if rows >= SMALL_SAMPLE else "mannw"


def _column_results(snapshot_dict: dict[str, Any], columns: list[str], threshold: float) -> dict[str, dict]:
    out: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        column = config.get("column")
        if column not in columns:
            continue
        p_value = float(metric["value"])
        out[column] = {
            "method": str(config.get("method") or "K-S p_value"),
            "p_value": p_value,
            "threshold": threshold,
            "drifted": bool(p_value < threshold),
        }
    return out


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    threshold: float = DEFAULT_THRESHOLD,
) -> DriftResult:
    """Evidently's data drift of ``current`` against ``reference`` (same numeric columns, one row per
    product): a K-S test per column at p < ``threshold``; drifted when the share of drifted columns
    reaches ``drift_share``."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    columns = [c for c in reference.columns if c in current.columns]
    if not columns:
        raise ValueError("reference and current share no column to compare")
    if len(reference) < 2 or len(current) < 2:
        raise ValueError(f"need at least 2 rows on each side, got {len(reference)} and {len(current)}")
    method = numeric_method(min(len(reference), len(current)))
    definition = DataDefinition(numerical_columns=columns)
    ref = Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition)
    cur = Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition)
    report = Report([DataDriftPreset(drift_share=drift_share, num_method=method, threshold=threshold)])
    snapshot = report.run(cur, ref)
    details = _column_results(snapshot.dict(), columns, threshold)
    drifted_columns = [c for c in columns if details.get(c, {}).get("drifted")]
    share = len(drifted_columns) / len(columns)
    return DriftResult(
        drifted=share >= drift_share - 1e-12,
        share=share,
        drifted_columns=drifted_columns,
        columns=details,
        n_reference=len(reference),
        n_current=len(current),
        drift_share=drift_share,
        snapshot=snapshot,
    )


def residual_drift(
    reference_residuals: pd.Series | pd.DataFrame,
    current_residuals: pd.Series | pd.DataFrame,
    threshold: float = DEFAULT_THRESHOLD,
) -> DriftResult:
    """Drift of the pooled scaled forecast errors: one column ``error``, the errors before the window
    against those inside it (a frame's ``error`` column, or a series)."""

    def column(values: pd.Series | pd.DataFrame) -> pd.DataFrame:
        series = values["error"] if isinstance(values, pd.DataFrame) else values
        series = pd.to_numeric(series, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
        return pd.DataFrame({"error": series.to_numpy(float)})

    return data_drift(column(reference_residuals), column(current_residuals), drift_share=1.0, threshold=threshold)
