"""Pictures people would rather look at than tables: forecast vs actual per demand pattern."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and servers have no display
import matplotlib.pyplot as plt
import pandas as pd

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_backtest_samples(
    backtest: pd.DataFrame,
    demand: pd.DataFrame,
    classes: pd.DataFrame,
    path: Path,
    per_pattern: int = 1,
    methods: tuple[str, ...] = ("Naive2", "AutoETS", "TSB"),
) -> Path | None:
    """One panel per demand pattern: history, actuals and backtest forecasts of a sample SKU."""
    tested = set(backtest["unique_id"].unique())
    samples = [
        (pattern, sku)
        for pattern, group in classes[classes.index.isin(tested) & ~classes["is_anomaly"]].groupby("pattern")
        for sku in group.sort_values("revenue", ascending=False).index[:per_pattern]
    ]
    if not samples:
        return None
    fig, axes = plt.subplots(len(samples), 1, figsize=(11, 3.0 * len(samples)), squeeze=False)
    for ax, (pattern, sku) in zip(axes[:, 0], samples, strict=True):
        hist = demand[demand["unique_id"] == sku].tail(104)
        ax.plot(hist["ds"], hist["y"], color="0.35", lw=1.2, label="actual")
        bt = backtest[backtest["unique_id"] == sku]
        for color, method in zip(COLORS, [m for m in methods if m in set(bt["method"])], strict=False):
            part = bt[bt["method"] == method]
            for _, window in part.groupby("cutoff"):
                ax.plot(window["ds"], window["yhat"], lw=1.6, color=color, label=method)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=8)
        ax.set_title(f"{sku} · {pattern}: backtest forecasts vs actual", fontsize=10)
        ax.set_ylabel("units / week")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_error_by_pattern(by_pattern: pd.DataFrame, path: Path, methods: list[str], metric: str = "mase") -> Path:
    """Grouped bars: mean error of the router and the other ``methods`` within each demand pattern."""
    t = by_pattern[by_pattern["method"].isin(methods)].pivot_table(index="pattern", columns="method", values=metric)
    t = t.reindex(columns=[m for m in methods if m in t.columns])
    ax = t.plot.bar(figsize=(9, 4), rot=0, width=0.8)
    ax.set_ylabel(f"mean {metric.upper()} (holdout window)")
    ax.set_title(f"{metric.upper()} by demand pattern: lower is better", fontsize=10)
    ax.legend(fontsize=8)
    fig = ax.get_figure()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
