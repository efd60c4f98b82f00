"""Write source tables and pipeline outputs, idempotently per run, to SQL databases or Hive.

Outputs carry ``run_id`` in their key: writing a run replaces that run's rows and never
duplicates them, and a failure half-way leaves the previous rows in place.

Two stores implement that contract (:class:`OutputStore`):

- :class:`SqlAlchemyStore` (SQLite, PostgreSQL, anything with a SQLAlchemy engine): the
  run's rows are deleted and the new ones inserted in one transaction;
- :class:`training.data.hive_store.HiveStore` (HiveServer2: Hive, Spark's Thrift server):
  Hive has no transactions, so every output table is partitioned by ``run_id`` and a run
  is written with ``INSERT OVERWRITE ... PARTITION (run_id=...)``.

The module functions (``write_output``, ``read_output``, ``prune_quarantine``,
``write_source_tables``) take a *target*: a SQLAlchemy engine, an Airflow provider hook
(SqliteHook, PostgresHook: its engine is used and disposed; HiveServer2Hook: the Hive
store), or a store; :func:`open_store` does the dispatch.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime, nullable=False)


def output_tables(schema: str | None = None) -> dict[str, sa.Table]:
    """The output tables' definitions (also the column list and types the Hive store uses)."""
    return _tables(schema)


def _tables(schema: str | None) -> dict[str, sa.Table]:
    md = sa.MetaData(schema=schema)
    return {
        "stock_classes": sa.Table(
            "stock_classes",
            md,
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("n_weeks", sa.Integer),
            sa.Column("revenue", sa.Float),
            sa.Column("abc", sa.String(1)),
            sa.Column("xyz", sa.String(1)),
            sa.Column("pattern", sa.String(16)),
            sa.Column("adi", sa.Float),
            sa.Column("cv2", sa.Float),
            sa.Column("zero_share", sa.Float),
            sa.Column("kmeans_cluster", sa.Integer),
            sa.Column("dbscan_cluster", sa.Integer),
            sa.Column("anomaly_score", sa.Float),
            sa.Column("is_anomaly", sa.Boolean),
            sa.Column("anomaly_reasons", sa.Text),
            _created(),
        ),
        "stock_forecasts": sa.Table(
            "stock_forecasts",
            md,
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("ds", sa.Date, primary_key=True),
            sa.Column("step", sa.Integer),
            sa.Column("method", sa.String(64)),
            sa.Column("yhat", sa.Float),
            sa.Column("lo80", sa.Float),
            sa.Column("hi80", sa.Float),
            sa.Column("lo95", sa.Float),
            sa.Column("hi95", sa.Float),
            sa.Column("model_version", sa.String(64)),
            sa.Column("confidence", sa.Float),
            sa.Column("explanation", sa.Text),
            _created(),
        ),
        "stock_quarantine": sa.Table(
            "stock_quarantine",
            md,
            sa.Column("run_id", sa.String(128), nullable=False, index=True),
            sa.Column("source_table", sa.String(64)),
            sa.Column("reason", sa.String(128)),
            sa.Column("sku", sa.String(64)),
            sa.Column("date", sa.String(32)),
            sa.Column("payload", sa.Text),
            _created(),
        ),
    }


OUTPUT_TABLES = ("stock_classes", "stock_forecasts", "stock_quarantine")


def _clean(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _records(df: pd.DataFrame, columns: Iterable[str]) -> list[dict]:
    cols = [c for c in columns if c in df.columns]
    return [{c: _clean(v) for c, v in zip(cols, row, strict=True)} for row in df[cols].itertuples(index=False)]


def _add_missing_columns(conn: sa.Connection, t: sa.Table) -> None:
    """Additive schema migration: columns a newer release added (nullable) are added in place."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(t.name, schema=t.schema)}
    for col in t.columns:
        if col.name not in have and col.nullable:
            name = f"{t.schema}.{t.name}" if t.schema else t.name
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {col.name} {col.type.compile(conn.dialect)}"))


def check_output_table(table: str) -> None:
    if table not in OUTPUT_TABLES:
        raise ValueError(f"unknown output table {table!r}; expected one of {OUTPUT_TABLES}")


def output_frame(table: str, df: pd.DataFrame, run_id: str, created_at: dt.datetime | None = None) -> pd.DataFrame:
    """``df`` with the bookkeeping columns every output row carries (run_id, created_at)."""
    now = created_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = df.assign(run_id=run_id, created_at=now)
    if "ds" in frame.columns:
        frame["ds"] = pd.to_datetime(frame["ds"]).dt.date
    return frame


@runtime_checkable
class OutputStore(Protocol):
    """Where pipeline outputs (and the demo source tables) are written."""

    def write(self, table: str, df: pd.DataFrame, run_id: str, schema: str | None = None) -> int: ...

    def read(self, table: str, run_id: str | None = None, schema: str | None = None) -> pd.DataFrame: ...

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int: ...

    def write_source_tables(
        self, products: pd.DataFrame, movements: pd.DataFrame, schema: str | None = None
    ) -> None: ...


class SqlAlchemyStore:
    """Outputs in a SQL database through SQLAlchemy: delete + insert per run id in one transaction."""

    def __init__(self, engine: Engine, dispose: bool = False) -> None:
        self.engine = engine
        self._dispose = dispose

    def close(self) -> None:
        if self._dispose:
            self.engine.dispose()

    def write(self, table: str, df: pd.DataFrame, run_id: str, schema: str | None = None) -> int:
        check_output_table(table)
        t = _tables(schema)[table]
        rows = _records(output_frame(table, df, run_id), [c.name for c in t.columns])
        with self.engine.begin() as conn:
            t.create(conn, checkfirst=True)
            _add_missing_columns(conn, t)
            conn.execute(t.delete().where(t.c.run_id == run_id))
            for i in range(0, len(rows), 5000):
                conn.execute(t.insert(), rows[i : i + 5000])
        return len(rows)

    def read(self, table: str, run_id: str | None = None, schema: str | None = None) -> pd.DataFrame:
        t = _tables(schema)[table]
        q = sa.select(t)
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all())

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int:
        t = _tables(schema)["stock_quarantine"]
        limit = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            if not sa.inspect(conn).has_table("stock_quarantine", schema=schema):
                return 0
            return conn.execute(t.delete().where(t.c.created_at < limit)).rowcount

    def write_source_tables(self, products: pd.DataFrame, movements: pd.DataFrame, schema: str | None = None) -> None:
        engine = self.engine
        with engine.begin() as conn:
            if schema and engine.dialect.name == "postgresql":
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            products.to_sql("products", conn, schema=schema, if_exists="replace", index=False)
            movements.assign(date=pd.to_datetime(movements["date"]).dt.date).to_sql(
                "stock_movements",
                conn,
                schema=schema,
                if_exists="replace",
                index=False,
                chunksize=20000,
                method="multi" if engine.dialect.name == "postgresql" else None,
            )


def is_hive_hook(target: Any) -> bool:
    """True for Airflow's HiveServer2Hook (or anything declaring the ``hiveserver2`` connection type)."""
    return getattr(target, "conn_type", None) == "hiveserver2"


@contextlib.contextmanager
def open_store(target: Any) -> Iterator[OutputStore]:
    """The store for ``target``: a store, a SQLAlchemy engine, or an Airflow provider hook.

    An engine made here from a SQL hook is disposed on exit; an engine passed in is left open.
    """
    if isinstance(target, OutputStore):
        yield target
    elif isinstance(target, Engine):
        if target.dialect.name == "hive":
            raise TypeError("Hive outputs are written through the HiveServer2Hook: pass the hook, not an engine")
        yield SqlAlchemyStore(target)
    elif is_hive_hook(target):
        from training.data.hive_store import HiveStore

        yield HiveStore(target)
    elif hasattr(target, "get_sqlalchemy_engine"):
        store = SqlAlchemyStore(target.get_sqlalchemy_engine(), dispose=True)
        try:
            yield store
        finally:
            store.close()
    else:
        raise TypeError(f"cannot write outputs to {type(target).__name__}: expected an engine, a hook or a store")


def write_output(target: Any, table: str, df: pd.DataFrame, run_id: str, schema: str | None = None) -> int:
    """Replace the rows of ``run_id`` in ``table`` with ``df``; returns rows written."""
    check_output_table(table)
    with open_store(target) as store:
        return store.write(table, df, run_id, schema)


def read_output(target: Any, table: str, run_id: str | None = None, schema: str | None = None) -> pd.DataFrame:
    """The rows of ``table`` (of one run when ``run_id`` is given)."""
    check_output_table(table)
    with open_store(target) as store:
        return store.read(table, run_id, schema)


def prune_quarantine(target: Any, older_than_days: int, schema: str | None = None) -> int:
    """Delete quarantined rows past their retention; returns how many were removed."""
    with open_store(target) as store:
        return store.prune_quarantine(older_than_days, schema)


def write_source_tables(
    target: Any, products: pd.DataFrame, movements: pd.DataFrame, schema: str | None = None
) -> None:
    """Replace the source tables with a catalogue (used by ``stockml demo-data``)."""
    with open_store(target) as store:
        store.write_source_tables(products, movements, schema)
