"""Reading a large demand source into Spark, in the demand contract (``unique_id, ds, y``).

What works from here, honestly (no JDBC driver jars: pyspark ships only Derby's and Hive's, and
this machine reaches nothing but PyPI):

- **parquet** (a lake, an export, or a run folder's ``demand.parquet``): :func:`read_demand_parquet`,
  read by Spark itself, so it scales with the cluster;
- **any SQL source the platform already reads** (SQLite, Postgres, Hive through HiveServer2):
  :func:`movement_chunks` reads the movements query in chunks through the connection's DbApiHook
  (``get_df_by_chunks``), :func:`stage_parquet` writes each chunk to a parquet file as it comes (the
  driver never holds the whole table), and Spark reads the folder. One reader, so it is bounded by
  the source's read speed, not by memory;
- :func:`weekly_demand` then aggregates daily movements to weekly demand on Spark with the rules of
  :func:`training.data.weekly.to_weekly_demand` (Monday weeks, zero-filled from the first sale to the
  last complete week), which the tests check row for row.

Validation and quarantine stay on the pandas ingest (``training.data.validate``): this path is for
forecasting a catalogue too large for one process, from a source that was validated already.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from training.data.source import MOVEMENT_COLUMNS, SourceQueries
from training.data.weekly import last_complete_week_start, week_start
from training.distributed.frames import as_demand


class ChunkedHook(Protocol):
    def get_df_by_chunks(self, sql: str, parameters: Any = None, *, chunksize: int) -> Iterator[pd.DataFrame]: ...


def read_demand_parquet(spark: SparkSession, path: Path | str) -> DataFrame:
    """Weekly demand stored as parquet (a file or a folder of parts) in the contract's Spark types.

    A file pandas wrote holds ``ds`` in nanoseconds, which the session of
    :func:`training.distributed.session.spark_session` reads as a long: it becomes a time stamp again here.
    """
    frame = spark.read.parquet(str(path))
    if dict(frame.dtypes)["ds"] == "bigint":
        micros = F.expr("timestamp_micros(div(ds, 1000))")  # an instant in the session's zone (UTC)
        frame = frame.withColumn("ds", micros.cast("timestamp_ntz"))
    return as_demand(frame)


def movement_chunks(hook: ChunkedHook, queries: SourceQueries, chunksize: int = 500_000) -> Iterator[pd.DataFrame]:
    """The movements query in chunks of ``chunksize`` rows, columns as the contract names them."""
    for chunk in hook.get_df_by_chunks(queries.movements, chunksize=chunksize):
        chunk.columns = [str(c).split(".")[-1].lower() for c in chunk.columns]  # Hive: "table.column"
        yield chunk[MOVEMENT_COLUMNS]


def stage_parquet(chunks: Iterable[pd.DataFrame], folder: Path) -> Path:
    """Each chunk to ``folder/part-<n>.parquet`` as it arrives; the folder is what Spark reads.

    ``date`` is written as a date and quantities as doubles, whatever types a chunk's driver gave,
    so every part has one schema.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(chunks):
        out = chunk.assign(date=pd.to_datetime(chunk["date"]).dt.date, sku=chunk["sku"].astype(str))
        quantities = [c for c in out.columns if c not in ("sku", "date")]
        out = out.astype(dict.fromkeys(quantities, float))
        pq.write_table(pa.Table.from_pandas(out, preserve_index=False), folder / f"part-{i:05d}.parquet")
    return folder


def last_week(movements: DataFrame, cutoff: pd.Timestamp | dt.date | None = None) -> pd.Timestamp:
    """The last week the demand runs to: the last complete one before ``cutoff``, else the last movement's."""
    if cutoff is not None:
        return last_complete_week_start(pd.Timestamp(cutoff))
    latest = movements.agg(F.max(F.to_date("date")).alias("d")).first()["d"]
    return week_start(pd.Timestamp(latest))


def weekly_demand(movements: DataFrame, cutoff: pd.Timestamp | dt.date | None = None) -> DataFrame:
    """Daily ``stock_movements`` → weekly demand, zero-filled from each SKU's first sale to the last week."""
    last = last_week(movements, cutoff).date()
    days = movements.select(F.col("sku").cast("string").alias("unique_id"), F.to_date("date").alias("day"), "qty_sold")
    weeks = days.withColumn("week", F.date_trunc("week", F.col("day")).cast("date"))  # Monday, as week_start
    sold = weeks.where((F.col("week") <= F.lit(last)) & (F.col("qty_sold") > 0))
    weekly = sold.groupBy("unique_id", "week").agg(F.sum("qty_sold").cast("double").alias("y"))
    first = weekly.groupBy("unique_id").agg(F.min("week").alias("first"))
    grid = first.select(
        "unique_id", F.explode(F.sequence("first", F.lit(last), F.expr("INTERVAL 7 DAYS"))).alias("week")
    )
    filled = grid.join(weekly, on=["unique_id", "week"], how="left").fillna(0.0, subset=["y"])
    return as_demand(filled.withColumnRenamed("week", "ds"))
