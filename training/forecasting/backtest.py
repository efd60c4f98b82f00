"""Rolling-origin backtesting of the model zoo over every SKU, and per-SKU method selection.

Several windows (origins ``h`` weeks apart by default) give each method a fair, repeated
out-of-sample trial; errors are scaled per window by that window's own training sample,
exactly as M4 scales a single holdout. Series too short for the windows are reported and
forecast with the method that wins their demand pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from training.forecasting.metrics import insample_scales, pointwise_errors, summarise
from training.forecasting.zoo import ModelZoo

MIN_TRAIN_WEEKS = 13
ALL_GROUPS = "__all__"
QUANTILES = {"q025": 0.025, "q10": 0.1, "q90": 0.9, "q975": 0.975}


@dataclass
class BacktestResult:
    forecasts: pd.DataFrame  # unique_id, ds, cutoff, y, method, yhat, bounds
    errors: pd.DataFrame  # one row per (unique_id, cutoff, method)
    summary: pd.DataFrame  # one row per method (sMAPE, MASE, OWA, ...)
    excluded: list[str]  # series too short for the windows
    h: int
    n_windows: int

    def per_sku(self) -> pd.DataFrame:
        """Mean error of each method on each SKU over the windows."""
        return self.errors.groupby(["unique_id", "method"])[["mase", "smape", "mae", "rmse"]].mean().reset_index()

    def best_method_per_sku(self) -> pd.Series:
        """The method with the lowest mean MASE (MAE where MASE is undefined) on each SKU."""
        e = self.per_sku()
        e["key"] = e["mase"].fillna(e["mae"] * 1e6)
        return e.sort_values(["unique_id", "key", "smape"]).groupby("unique_id")["method"].first()

    def summary_by(self, groups: pd.Series, name: str = "pattern") -> pd.DataFrame:
        """The method table within each group of SKUs (for example per demand pattern)."""
        e = self.errors.assign(**{name: self.errors["unique_id"].map(groups)})
        parts = {key: summarise(part) for key, part in e.groupby(name)}
        return pd.concat(parts, names=[name]).reset_index()

    def best_method_by(self, groups: pd.Series) -> dict[str, str]:
        """Per group, the method with the lowest mean MASE.

        MASE rather than OWA: sMAPE (half of OWA) rewards forecasting zero on intermittent
        products, where a zero forecast against a zero actual scores a perfect 0.
        """
        table = self.summary_by(groups, "group")
        return {g: str(t.sort_values("mase")["method"].iloc[0]) for g, t in table.groupby("group")}

    def best_method(self) -> str:
        return str(self.summary.sort_values("mase").index[0])


def window_scales(demand: pd.DataFrame, cutoffs: pd.DataFrame, m: int = 1) -> pd.DataFrame:
    """MASE scale of each (unique_id, cutoff): the training sample of that backtest window."""
    frames = []
    for cutoff, ids in cutoffs.groupby("cutoff")["unique_id"]:
        train = demand[demand["unique_id"].isin(ids.unique()) & (demand["ds"] <= cutoff)]
        s = insample_scales(train, m).rename("scale").reset_index()
        s["cutoff"] = cutoff
        frames.append(s)
    return pd.concat(frames, ignore_index=True)


def backtest(
    demand: pd.DataFrame,
    zoo: ModelZoo,
    h: int = 13,
    n_windows: int = 3,
    step_size: int | None = None,
    scale_lag: int = 1,
    progress: Callable[[int, int], None] | None = None,
    chunks: int = 1,
) -> BacktestResult:
    """Run the zoo over ``n_windows`` rolling origins and score every forecast.

    ``chunks`` > 1 runs per-series members in that many groups of SKUs, calling ``progress(done, total)``.
    """
    step = step_size or h
    need = h + step * (n_windows - 1) + MIN_TRAIN_WEEKS
    lengths = demand.groupby("unique_id").size()
    excluded = sorted(lengths[lengths < need].index.astype(str).tolist())
    usable = demand[~demand["unique_id"].isin(excluded)]
    if usable.empty:
        raise ValueError(
            f"No series has the {need} weeks that {n_windows} backtest windows of {h} weeks need; "
            "reduce --windows or --horizon."
        )
    cv = zoo.cross_validation(
        usable, h=h, n_windows=n_windows, step_size=step, intervals=False, progress=progress, chunks=chunks
    )
    scales = window_scales(usable, cv[["unique_id", "cutoff"]].drop_duplicates(), scale_lag)
    errors = pointwise_errors(cv, scales)
    return BacktestResult(cv, errors, summarise(errors), excluded, h, n_windows)


def residual_quantiles(result: BacktestResult, groups: pd.Series) -> pd.DataFrame:
    """Quantiles of scaled backtest errors per (method, group, step) for empirical intervals.

    Methods without native intervals (Croston family, TSB, ADIDA, IMAPA, SES) get 80/95 %
    bounds from how wrong they were in the backtest on products of the same pattern: a
    split-conformal interval in units of each SKU's MASE scale. Rows with group ``ALL_GROUPS``
    pool every product, for a group the backtest never saw (a pattern held only by short SKUs).
    """
    f = result.forecasts.copy()
    f["step"] = f.groupby(["unique_id", "cutoff", "method"]).cumcount() + 1
    scale = result.errors.set_index(["unique_id", "cutoff", "method"])["scale"]
    f = f.join(scale, on=["unique_id", "cutoff", "method"])
    f = f[f["scale"] > 0]
    f["z"] = (f["y"] - f["yhat"]) / f["scale"]
    f["group"] = f["unique_id"].map(groups)
    f = pd.concat([f, f.assign(group=ALL_GROUPS)], ignore_index=True)
    q = f.groupby(["method", "group", "step"])["z"].quantile(list(QUANTILES.values())).unstack()
    q.columns = list(QUANTILES)
    return q.reset_index()


def add_empirical_intervals(
    forecasts: pd.DataFrame, quantiles: pd.DataFrame, scales: pd.Series, groups: pd.Series
) -> pd.DataFrame:
    """Fill missing bounds of ``forecasts`` (long: unique_id, ds, method, yhat, lo/hi) from quantiles."""
    f = forecasts.copy()
    f["step"] = f.groupby(["unique_id", "method"]).cumcount() + 1
    f["group"] = f["unique_id"].map(groups)
    f = f.merge(quantiles, on=["method", "group", "step"], how="left")
    pooled = quantiles[quantiles["group"] == ALL_GROUPS].drop(columns="group")
    f = f.merge(pooled, on=["method", "step"], how="left", suffixes=("", "_all"))
    for q in QUANTILES:
        f[q] = f[q].fillna(f.pop(f"{q}_all"))
    s = f["unique_id"].map(scales).fillna(0.0)
    for col, q in (("lo80", "q10"), ("hi80", "q90"), ("lo95", "q025"), ("hi95", "q975")):
        # Keep the point forecast inside its bounds: on intermittent demand most errors are
        # negative (actual 0, forecast > 0), so a raw q90 can fall below zero and put hi80
        # under yhat. Lower bounds take min(q, 0), upper bounds max(q, 0); nesting holds.
        side = f[q].clip(upper=0) if col.startswith("lo") else f[q].clip(lower=0)
        fill = (f["yhat"] + side * s).clip(lower=0)
        f[col] = f[col].where(f[col].notna(), fill)
    return f.drop(columns=[*QUANTILES, "group"])
