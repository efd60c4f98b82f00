"""The zoo's statsforecast batch on Spark: one ``StatsForecast`` call per partition, the pandas path's code.

Each partition holds whole series (a hash repartition on ``unique_id``); a ``mapInPandas`` function runs
on it exactly what the pandas path runs on the whole catalogue (``batched_statsforecast`` then
``tidy``), so forecasts and backtests are the pandas path's, float64 included, and the partition's
result leaves already in the long contract (no wide frame to explode on Spark).

Why not statsforecast's fugue back-end (``StatsForecast(...).forecast(df=spark_frame)``), which this
module used first: it partitions ``by unique_id`` with Fugue's default algorithm, i.e. Spark's
``groupBy(...).applyInPandas``, one pandas call **per series**. Every SKU then paid a ``StatsForecast``
of its own (frame validation, sort, ``GroupedArray``, the wide frame, its Arrow round trip): on
``local[2]`` (bench/scale_spark.py, 10 fast members, bench/RESULTS.md) 300 SKUs took 2.6x the pandas
path and 3,000 SKUs 205 s; one call per partition (a few per core) spreads that cost over thousands of
series: 1.3x and 132 s (the pandas path: 130 s). It also declared every output ``float32`` (a subclass
had to widen them back).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from pyspark.sql import DataFrame
from statsforecast import StatsForecast

from training.distributed import frames
from training.forecasting.statistical import StatsForecastMember, batched_statsforecast, tidy

PartFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


def _batch_fn(
    members: list[StatsForecastMember], freq: str | int, keys: list[str], level: Sequence[int],
    run: Callable[[StatsForecast, pd.DataFrame], pd.DataFrame],
) -> PartFn:  # fmt: skip
    """A ``mapInPandas`` function: ``run(statsforecast, panel)`` on the partition, one long frame per alias.

    What travels with the function is the ``StatsForecast`` of the batch (its models), built here on the
    driver, not the members: a fitted member keeps the history it was fitted on.
    """
    aliases = [m.alias for m in members]
    columns = frames.long_schema(keys, level).names
    batch = batched_statsforecast(members, freq, 1)  # one process per partition: Spark is the pool

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        panel = frames.whole(batches)
        if panel.empty:
            return
        for part in tidy(run(copy.deepcopy(batch), panel), aliases, keys, level):
            yield part.reindex(columns=columns)

    return apply


def forecast_long(
    members: list[StatsForecastMember], freq: str | int, by_series: DataFrame, h: int, level: Sequence[int]
) -> DataFrame:
    """The batch's forecast ``h`` steps from the end of each series, in the long contract.

    ``by_series`` must hold every series whole in one partition (``SparkZoo._by_series``).
    """
    keys = frames.FORECAST_KEYS
    lv = list(level) or None

    def run(sf: StatsForecast, panel: pd.DataFrame) -> pd.DataFrame:
        return sf.forecast(df=panel, h=h, level=lv)

    return by_series.mapInPandas(_batch_fn(members, freq, keys, level, run), frames.long_schema(keys, level))


def cross_validation_long(
    members: list[StatsForecastMember], freq: str | int, by_series: DataFrame, h: int, n_windows: int,
    step_size: int, level: Sequence[int],
) -> DataFrame:  # fmt: skip
    """The batch's rolling-origin forecasts (``unique_id, ds, cutoff, y``, method, ...), in the long contract."""
    keys = frames.BACKTEST_KEYS
    lv = list(level) or None

    def run(sf: StatsForecast, panel: pd.DataFrame) -> pd.DataFrame:
        return sf.cross_validation(df=panel, h=h, n_windows=n_windows, step_size=step_size, level=lv)

    return by_series.mapInPandas(_batch_fn(members, freq, keys, level, run), frames.long_schema(keys, level))
