"""The long forecast contract as Spark frames: schemas, clipping, a partition in one pandas frame, back to pandas.

The zoo's pandas path ends in ``ModelZoo._finish``: keys, ``method``, ``yhat``, then ``lo``/``hi`` per
level as float64, NaN where a member has no bounds, clipped at zero. Everything here gives the same
columns and types on Spark, so a Spark result collected with :func:`to_pandas` is the pandas path's
frame (the integration test compares them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampNTZType

from training.forecasting.contract import LEVELS

FORECAST_KEYS = ["unique_id", "ds"]
BACKTEST_KEYS = ["unique_id", "ds", "cutoff", "y"]
KEY_TYPES = {"unique_id": StringType(), "ds": TimestampNTZType(), "cutoff": TimestampNTZType(), "y": DoubleType()}
DEMAND_SCHEMA = StructType([StructField(c, KEY_TYPES[c]) for c in ("unique_id", "ds", "y")])


def bound_columns(level: Sequence[int]) -> list[str]:
    """``lo80, hi80, lo95, hi95`` for the default levels: the order the pandas path writes them in."""
    return [f"{b}{lv}" for lv in (level or LEVELS) for b in ("lo", "hi")]


def long_schema(keys: list[str], level: Sequence[int]) -> StructType:
    """Keys, method, yhat, bounds: what every member's part of a Spark result is cast to."""
    fields = [StructField(k, KEY_TYPES[k]) for k in keys] + [StructField("method", StringType())]
    return StructType(fields + [StructField(c, DoubleType()) for c in ["yhat", *bound_columns(level)]])


def demand_frame(spark: SparkSession, demand: pd.DataFrame) -> DataFrame:
    """A pandas demand frame (``unique_id, ds, y``) as a Spark frame of the contract's types."""
    pdf = demand[["unique_id", "ds", "y"]].astype({"unique_id": str, "y": float})
    pdf["ds"] = pd.to_datetime(pdf["ds"]).astype("datetime64[ns]")
    return spark.createDataFrame(pdf, schema=DEMAND_SCHEMA)


def as_demand(frame: DataFrame) -> DataFrame:
    """Any Spark frame with ``unique_id, ds, y`` cast to the contract's types (ds as a calendar stamp)."""
    return frame.select(*[F.col(c).cast(KEY_TYPES[c]).alias(c) for c in ("unique_id", "ds", "y")])


def _floor(col: Column) -> Column:
    # Not F.greatest: it skips nulls (a missing bound would become 0); NaN < 0 is false in Spark,
    # so NaN and null bounds stay what they are, as pandas' clip leaves NaN.
    return F.when(col < 0, F.lit(0.0)).otherwise(col)


def finish(parts: list[DataFrame], keys: list[str], level: Sequence[int], clip_negative: bool) -> DataFrame:
    """One long Spark frame from the members' parts, floored at zero like the pandas path."""
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    if clip_negative:
        values = ["yhat", *bound_columns(level)]
        out = out.select(*[_floor(F.col(c)).alias(c) if c in values else F.col(c) for c in out.columns])
    return out


def whole(batches: Iterator[pd.DataFrame]) -> pd.DataFrame:
    """The rows of one partition in one frame (inside ``mapInPandas``): Arrow batches may cut a series, a
    partition does not."""
    parts = [b for b in batches if len(b)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def to_pandas(frame: DataFrame) -> pd.DataFrame:
    """Collect a long Spark result with the pandas path's dtypes (object ids, ``datetime64[ns]`` stamps)."""
    pdf = frame.toPandas()
    for c in ("ds", "cutoff"):
        if c in pdf:
            pdf[c] = pdf[c].astype("datetime64[ns]")
    return pdf
