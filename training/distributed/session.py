"""Building a Spark session the zoo can run on.

Why a helper and not ``SparkSession.builder`` at each call site: three settings decide whether the
engine works at all, and each was found the hard way here:

- on a local master the Python workers run this process's interpreter. Spark starts
  ``$PYSPARK_PYTHON`` or else ``python3`` from ``PATH``, which in a virtual environment lacks pandas
  (the engine's pandas UDFs then fail with ``ModuleNotFoundError: No module named 'pandas'``
  inside the worker). The ``spark.pyspark.python`` setting does not help here: pyspark reads only the
  environment variable, once, when the context starts; the context's ``pythonExec``, which every
  Python UDF is created with, is set instead (on a cluster the executors' Python is the cluster's);
- ``spark.sql.session.timeZone`` is UTC and the demand's ``ds`` is ``timestamp_ntz``: a week start is
  a calendar date, and a zone-aware ``timestamp`` would move it by the machine's offset on the way
  through Arrow;
- Arrow is on, so pandas ↔ Spark conversions are columnar (the pandas UDFs need it anyway);
- shuffle partitions are not merged by adaptive execution (it sizes them by bytes, and forecasting
  costs CPU per series: merged, the whole zoo ran on one core);
- parquet nanosecond time stamps (what pandas writes, e.g. a run folder's ``demand.parquet``) are read
  as longs instead of failing the read.

Nothing runs at import; :func:`spark_session` is ``getOrCreate``, so a session the caller already has
(a cluster's, with its own master) is reused and only the SQL settings above are applied to it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pyspark.sql import SparkSession

# No web UI and no progress bars: a job inside a pipeline step or a test has nobody watching them.
UI_CONF = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
SQL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # pandas writes parquet time stamps in nanoseconds, which Spark 4 refuses to read
    # ([PARQUET_TYPE_ILLEGAL] INT64 (TIMESTAMP(NANOS,false))); read as longs, they are converted back
    # by training.data.spark_source.read_demand_parquet
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    # Adaptive execution merges small shuffle partitions by their bytes: a catalogue's demand is a few
    # MB, so every series ended up in one partition and one core while the forecasting (CPU, not bytes)
    # waited. Keep the partitions the job asked for.
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
}


def spark_session(
    master: str = "local[*]",
    shuffle_partitions: int | None = None,
    app_name: str = "stockml",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A session on ``master``; on a local one the Python workers run this interpreter (module docstring).

    ``shuffle_partitions`` sets ``spark.sql.shuffle.partitions`` (Spark's 200 is far too many for a
    laptop; a cluster wants a few per core). ``conf`` adds any other Spark setting.
    """
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in UI_CONF.items():
        builder = builder.config(key, value)
    settings = dict(SQL_CONF)
    if shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if spark.sparkContext.master.startswith("local"):
        spark.sparkContext.pythonExec = sys.executable
    for key, value in settings.items():
        if key.startswith("spark.sql."):  # runtime settings: also on a session that already existed
            spark.conf.set(key, value)
    return spark


@contextmanager
def spark_job(master: str = "local[2]", shuffle_partitions: int = 4, **kwargs: object) -> Iterator[SparkSession]:
    """A session for one job (a pipeline step, a benchmark), stopped when the job ends."""
    spark = spark_session(master, shuffle_partitions, **kwargs)  # type: ignore[arg-type]
    try:
        yield spark
    finally:
        spark.stop()
