"""Backtest: rolling-origin cross-validation of the model zoo, and its accuracy reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from stockml.plots import plot_backtest_samples
from stockml.run import Progress, Run, noop_progress
from stockml.settings import Settings
from stockml.steps.ingest import load_demand, load_regressors
from training.forecasting.backtest import BacktestResult, backtest
from training.forecasting.methods import drop_unavailable
from training.forecasting.metrics import summarise
from training.forecasting.zoo import ModelZoo


def zoo_params(run: Run) -> dict[str, dict]:
    """Hyper-parameters AutoML tuned for zoo members in this run (empty: the defaults)."""
    path = run.layout.zoo_params
    return json.loads(path.read_text()) if path.exists() else {}


def make_zoo(
    s: Settings, params: dict[str, dict] | None = None, methods: list[str] | None = None, spark: Any = None
) -> ModelZoo:
    """The zoo of the settings' methods; one that cannot run here (TimesFM without a checkpoint) is left out
    with a logged warning. With a Spark session (``STOCKML_ENGINE=spark``: :func:`engine_session`) it is a
    ``SparkZoo``, which takes and gives the same pandas frames and runs its work on Spark."""
    methods = drop_unavailable(methods or s.methods or None)
    return engine_zoo(spark, methods=methods, season_length=s.season_length, n_jobs=s.n_jobs, params=params or {})


def engine_zoo(spark: Any, **kwargs: Any) -> ModelZoo:
    """``ModelZoo(**kwargs)``, or a ``SparkZoo`` on ``spark`` when there is a session (same frames in and out)."""
    if spark is None:
        return ModelZoo(**kwargs)
    from training.distributed.spark_engine import SparkZoo  # pyspark loads only for the spark engine

    return SparkZoo(**kwargs, spark=spark)


@contextmanager
def engine_session(s: Settings) -> Iterator[Any]:
    """The Spark session of one step when ``STOCKML_ENGINE=spark`` (stopped after it), else None."""
    if s.engine != "spark":
        yield None
        return
    from training.distributed.session import spark_job

    with spark_job(s.spark_master, s.spark_shuffle_partitions, app_name="stockml") as spark:
        yield spark


def backtest_step(run: Run, progress: Progress = noop_progress, chunks: int = 8) -> BacktestResult:
    """Rolling-origin backtest of the zoo; per-series members in SKU chunks so long runs can report progress."""
    s = run.settings
    demand, _ = load_demand(run)
    try:
        with engine_session(s) as spark:
            zoo = make_zoo(s, zoo_params(run), spark=spark)
            zoo.regressors = load_regressors(run)  # for members that take them (price_promotions); None without
            result = backtest(
                demand, zoo, s.horizon, s.backtest_windows,
                progress=lambda done, total: progress("backtest", done, total), chunks=chunks,
            )  # fmt: skip
    except ValueError as exc:
        if "No series has" not in str(exc):
            raise
        raise ValueError(
            f"No SKU has enough history for {s.backtest_windows} backtest windows of {s.horizon} weeks; "
            "lower STOCKML_BACKTEST_WINDOWS or STOCKML_HORIZON."
        ) from exc
    forecasts, errors, excluded = result.forecasts, result.errors, result.excluded
    layout = run.layout
    forecasts.to_parquet(layout.backtest_forecasts, index=False)
    errors.to_parquet(layout.backtest_errors, index=False)
    run.save_json(layout.backtest_meta, {"excluded": excluded, "h": s.horizon, "windows": s.backtest_windows})
    return result


def load_backtest(run: Run) -> BacktestResult:
    layout = run.layout
    meta = run.load_json(layout.backtest_meta)
    errors = pd.read_parquet(layout.backtest_errors)
    return BacktestResult(
        pd.read_parquet(layout.backtest_forecasts),
        errors,
        summarise(errors),
        meta["excluded"],
        meta["h"],
        meta["windows"],
    )


def backtest_reports(run: Run, result: BacktestResult, classes: pd.DataFrame) -> None:
    """Forecast-vs-actual plot and accuracy tables (per method, per pattern) in the run folder."""
    layout = run.layout
    plot_backtest_samples(result.forecasts, load_demand(run)[0], classes, layout.forecast_plot)
    result.summary.to_csv(layout.accuracy_by_method)
    result.summary_by(classes["pattern"]).to_csv(layout.accuracy_by_pattern, index=False)
