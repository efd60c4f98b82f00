"""statsforecast's fugue back-end on Spark, with the pandas path's float64 outputs.

``StatsForecast.forecast(df=spark_frame)`` works with pyspark 4.3 and fugue 0.9.7 as pinned (once the
Python workers run an interpreter that has pandas: :mod:`training.distributed.session`), but its
``FugueBackend`` declares every output column ``float32``: forecasts, bounds and a backtest's ``y``
come back rounded to about 7 digits, which the pandas path does not do (its forecasts are float64).
That showed as MASE/bias differences of ~1e-5 relative on near-zero errors. :class:`Float64Backend`
declares the same schema in float64, so the two paths give the same numbers; statsforecast itself is
not changed (the per-partition work is its own code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from statsforecast.distributed.fugue import FugueBackend
from triad import Schema

from training.forecasting.statistical import StatsForecastMember, batched_statsforecast

COLUMNS = {"id_col": "unique_id", "time_col": "ds", "target_col": "y"}


class Float64Backend(FugueBackend):
    """statsforecast's fugue back-end whose output columns are float64 instead of float32."""

    def _get_output_schema(self, **kwargs: Any) -> Schema:
        schema = super()._get_output_schema(**kwargs)
        return Schema([pa.field(f.name, pa.float64()) if pa.types.is_float32(f.type) else f for f in schema.fields])


def _backend_and_models(spark: SparkSession, members: list[StatsForecastMember], freq: str | int) -> tuple:
    sf = batched_statsforecast(members, freq, 1)  # one worker per partition: Spark is the pool
    return Float64Backend(spark), {"models": sf.models, "fallback_model": sf.fallback_model, "freq": sf.freq}


def forecast_wide(
    spark: SparkSession, members: list[StatsForecastMember], freq: str | int, demand: DataFrame, h: int,
    level: Sequence[int],
) -> DataFrame:  # fmt: skip
    """statsforecast's wide forecast frame (``<alias>``, ``<alias>-lo-<lv>``, ...) of the batch, on Spark."""
    backend, models = _backend_and_models(spark, members, freq)
    return backend.forecast(df=demand, h=h, X_df=None, level=list(level) or None, fitted=False,
                            prediction_intervals=None, **models, **COLUMNS)  # fmt: skip


def cross_validation_wide(
    spark: SparkSession, members: list[StatsForecastMember], freq: str | int, demand: DataFrame, h: int,
    n_windows: int, step_size: int, level: Sequence[int],
) -> DataFrame:  # fmt: skip
    """statsforecast's wide rolling-origin frame (``unique_id, ds, cutoff, y`` and the models), on Spark."""
    backend, models = _backend_and_models(spark, members, freq)
    return backend.cross_validation(df=demand, h=h, n_windows=n_windows, step_size=step_size, test_size=None,
                                    input_size=None, level=list(level) or None, refit=True, fitted=False,
                                    prediction_intervals=None, **models, **COLUMNS)  # fmt: skip
