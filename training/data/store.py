"""Write source tables and pipeline outputs, idempotently per output key, to SQL databases or Hive.

Outputs are keyed by what the run consumed (:class:`~training.data.output_schema.OutputKey`:
the pipeline and the data cut-off week), not by the run id: writing replaces that key's rows
and never duplicates them, however ops re-ran the pipeline, and a failure half-way leaves
the previous rows in place. ``run_id`` is a plain column (which run wrote the rows).

Two stores implement that contract (:class:`~training.data.output_schema.OutputStore`, over the
table definitions of :mod:`training.data.output_schema`):

- :class:`training.data.sql_store.SqlAlchemyStore` (SQLite, PostgreSQL, anything with a
  SQLAlchemy engine): the key's rows are deleted and the new ones inserted in one transaction;
- :class:`training.data.hive_store.HiveStore` (HiveServer2: Hive, Spark's Thrift server):
  Hive has no transactions, so every output table is partitioned by the key and a write
  is one ``INSERT OVERWRITE ... PARTITION (pipeline=..., cutoff_week=...)``.

The module functions (``write_output``, ``read_output``, ``prune_quarantine``,
``write_source_tables``) take a *target*: a SQLAlchemy engine, an Airflow provider hook
(SqliteHook, PostgresHook: its engine is used and disposed; HiveServer2Hook: the Hive
store), or a store; :func:`open_store` does the dispatch. Imports run one way: this module
→ the two stores → the schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from training.data.hive_store import HiveStore
from training.data.output_schema import OUTPUT_TABLES, OutputKey, OutputStore, check_output_table, output_tables
from training.data.sql_store import SqlAlchemyStore

__all__ = [
    "OUTPUT_TABLES",
    "HiveStore",
    "OutputKey",
    "OutputStore",
    "SqlAlchemyStore",
    "is_hive_hook",
    "latest_key",
    "latest_output",
    "open_store",
    "output_tables",
    "prune_quarantine",
    "read_output",
    "write_output",
    "write_source_tables",
]


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
        yield HiveStore(target)
    elif hasattr(target, "get_sqlalchemy_engine"):
        store = SqlAlchemyStore(target.get_sqlalchemy_engine(), dispose=True)
        try:
            yield store
        finally:
            store.close()
    else:
        raise TypeError(f"cannot write outputs to {type(target).__name__}: expected an engine, a hook or a store")


def write_output(
    target: Any, table: str, df: pd.DataFrame, key: OutputKey, run_id: str, schema: str | None = None
) -> int:
    """Replace the rows of ``key`` in ``table`` with ``df``, written by ``run_id``; returns rows written."""
    check_output_table(table)
    with open_store(target) as store:
        return store.write(table, df, key, run_id, schema)


def read_output(
    target: Any, table: str, run_id: str | None = None, schema: str | None = None, key: OutputKey | None = None
) -> pd.DataFrame:
    """The rows of ``table`` (those a run wrote and that are still in place, when ``run_id`` is given;
    those of one output key, when ``key`` is)."""
    check_output_table(table)
    with open_store(target) as store:
        return store.read(table, run_id, schema, key) if key is not None else store.read(table, run_id, schema)


def latest_key(target: Any, table: str, schema: str | None = None) -> OutputKey | None:
    """The output key readers want from ``table``: the latest data cut-off, and of the pipeline that
    wrote last when several wrote that cut-off; None when the table is absent or empty."""
    check_output_table(table)
    with open_store(target) as store:
        keys = store.keys(table, schema)
    if keys.empty:
        return None
    last = keys.sort_values(["cutoff_week", "created_at"]).iloc[-1]
    return OutputKey(str(last["pipeline"]), str(last["cutoff_week"]))


def latest_output(target: Any, table: str, schema: str | None = None) -> pd.DataFrame | None:
    """The rows of :func:`latest_key` in ``table`` (one query for them, not the whole history of
    cut-offs), or None when the table is absent or empty."""
    key = latest_key(target, table, schema)
    if key is None:
        return None
    rows = read_output(target, table, None, schema, key)
    return None if rows.empty else rows.reset_index(drop=True)


def prune_quarantine(target: Any, older_than_days: int, schema: str | None = None) -> int:
    """Delete quarantined rows past their retention; returns how many were removed."""
    with open_store(target) as store:
        return store.prune_quarantine(older_than_days, schema)


def write_source_tables(
    target: Any,
    products: pd.DataFrame,
    movements: pd.DataFrame,
    schema: str | None = None,
    price_promotions: pd.DataFrame | None = None,
) -> None:
    """Replace the source tables with a catalogue (used by ``stockml demo-data``).

    ``price_promotions`` (optional) replaces that table too; without it the table is left as it is.
    """
    with open_store(target) as store:
        if price_promotions is None:
            store.write_source_tables(products, movements, schema)
        else:
            store.write_source_tables(products, movements, schema, price_promotions=price_promotions)
