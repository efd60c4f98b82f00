"""Outputs and source tables in a SQL database through SQLAlchemy (SQLite, PostgreSQL, ...).

The rows of an output key (pipeline, data cut-off week) are deleted and the new ones inserted
in one transaction, so a failure half-way leaves the previous rows in place and a re-run over
the same data replaces them whatever its run id.

A table of the old layout (``run_id`` in the key, no ``pipeline``/``cutoff_week``) is
recreated on the first write: its rows are copied to ``<table>__runid_keyed`` first (they
have no data cut-off to be keyed by), then the table is dropped and created with the new key.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from training.data.output_schema import (
    KEY_COLUMNS,
    LEGACY_SUFFIX,
    OutputKey,
    check_output_table,
    output_frame,
    output_tables,
)

log = logging.getLogger(__name__)


def _clean(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _column(values: pd.Series) -> list:
    """A column's values as :func:`_clean` makes them, numeric columns converted in one pass."""
    raw = values._values
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        out = raw.tolist()  # Python scalars, as numpy's .item() gives them
        if raw.dtype.kind == "f":
            for i in np.flatnonzero(np.isnan(raw)):
                out[i] = None
        return out
    return [_clean(v) for v in values]


def _records(df: pd.DataFrame, columns: Iterable[str]) -> list[dict]:
    cols = [c for c in columns if c in df.columns]
    data = [_column(df[c]) for c in cols]
    return [dict(zip(cols, row, strict=True)) for row in zip(*data, strict=True)]


def _name(conn: sa.Connection, table: str, schema: str | None) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def _add_missing_columns(conn: sa.Connection, t: sa.Table) -> None:
    """Additive schema migration: columns a newer release added (nullable) are added in place."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(t.name, schema=t.schema)}
    for col in t.columns:
        if col.name not in have and col.nullable:
            name = _name(conn, t.name, t.schema)
            conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {col.name} {col.type.compile(conn.dialect)}"))


def is_legacy_layout(conn: sa.Connection, t: sa.Table) -> bool:
    """True when the table in the database is keyed the old way (by run id) rather than by ``t``'s key.

    Old tables lack the key columns; a table whose primary key differs from ``t``'s (``run_id``
    in it) is old as well, since delete-then-insert by output key would break its uniqueness.
    """
    inspector = sa.inspect(conn)
    have = {c["name"] for c in inspector.get_columns(t.name, schema=t.schema)}
    if not set(KEY_COLUMNS) <= have:
        return True
    pk = set(inspector.get_pk_constraint(t.name, schema=t.schema).get("constrained_columns") or [])
    return pk != {c.name for c in t.primary_key.columns}


def recreate_legacy_table(conn: sa.Connection, t: sa.Table) -> str:
    """Copy an old-layout table to ``<table>__runid_keyed`` (``_2``, ``_3``... if taken), drop it.

    Copy first, drop second: a failure between the two leaves both. Returns the copy's name.
    """
    inspector = sa.inspect(conn)
    legacy, n = f"{t.name}{LEGACY_SUFFIX}", 1
    while inspector.has_table(legacy, schema=t.schema):
        n += 1
        legacy = f"{t.name}{LEGACY_SUFFIX}_{n}"
    old, copy = _name(conn, t.name, t.schema), _name(conn, legacy, t.schema)
    conn.execute(sa.text(f"CREATE TABLE {copy} AS SELECT * FROM {old}"))
    conn.execute(sa.text(f"DROP TABLE {old}"))
    log.warning("output table %s was keyed by run_id: its rows were moved to %s and it was recreated", old, copy)
    return legacy


def ensure_output_table(conn: sa.Connection, t: sa.Table) -> None:
    """Create the table, recreate it if it has the old key, or add the columns a newer release defines."""
    if sa.inspect(conn).has_table(t.name, schema=t.schema):
        if is_legacy_layout(conn, t):
            recreate_legacy_table(conn, t)
        else:
            _add_missing_columns(conn, t)
            return
    t.create(conn)


class SqlAlchemyStore:
    """Outputs in a SQL database through SQLAlchemy: delete + insert per output key in one transaction."""

    def __init__(self, engine: Engine, dispose: bool = False) -> None:
        self.engine = engine
        self._dispose = dispose

    def close(self) -> None:
        if self._dispose:
            self.engine.dispose()

    def write(self, table: str, df: pd.DataFrame, key: OutputKey, run_id: str, schema: str | None = None) -> int:
        """Replace the rows of ``key`` in ``table`` with ``df`` (written by ``run_id``); returns rows written."""
        check_output_table(table)
        t = output_tables(schema)[table]
        rows = _records(output_frame(table, df, key, run_id), [c.name for c in t.columns])
        with self.engine.begin() as conn:
            ensure_output_table(conn, t)
            conn.execute(t.delete().where(t.c.pipeline == key.pipeline, t.c.cutoff_week == key.cutoff_week))
            for i in range(0, len(rows), 5000):
                conn.execute(t.insert(), rows[i : i + 5000])
        return len(rows)

    def read(
        self, table: str, run_id: str | None = None, schema: str | None = None, key: OutputKey | None = None
    ) -> pd.DataFrame:
        t = output_tables(schema)[table]
        q = sa.select(t)
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        if key is not None:
            q = q.where(t.c.pipeline == key.pipeline, t.c.cutoff_week == key.cutoff_week)
        with self.engine.begin() as conn:
            if sa.inspect(conn).has_table(t.name, schema=schema) and is_legacy_layout(conn, t):
                recreate_legacy_table(conn, t)  # an old table has none of the new key's rows
                t.create(conn)
            return pd.DataFrame(conn.execute(q).mappings().all())

    def keys(self, table: str, schema: str | None = None) -> pd.DataFrame:
        """``pipeline, cutoff_week, created_at`` (the newest row's) per output key in ``table``; none without it."""
        t = output_tables(schema)[table]
        q = sa.select(t.c.pipeline, t.c.cutoff_week, sa.func.max(t.c.created_at).label("created_at")).group_by(
            t.c.pipeline, t.c.cutoff_week
        )
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table(t.name, schema=schema) or is_legacy_layout(conn, t):
                return pd.DataFrame(columns=["pipeline", "cutoff_week", "created_at"])
            return pd.DataFrame(conn.execute(q).mappings().all(), columns=["pipeline", "cutoff_week", "created_at"])

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int:
        t = output_tables(schema)["stock_quarantine"]
        limit = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            if not sa.inspect(conn).has_table("stock_quarantine", schema=schema):
                return 0
            return conn.execute(t.delete().where(t.c.created_at < limit)).rowcount

    def write_source_tables(
        self,
        products: pd.DataFrame,
        movements: pd.DataFrame,
        schema: str | None = None,
        price_promotions: pd.DataFrame | None = None,
    ) -> None:
        engine = self.engine
        with engine.begin() as conn:
            if schema and engine.dialect.name == "postgresql":
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            products.to_sql("products", conn, schema=schema, if_exists="replace", index=False)
            dated = movements.assign(date=pd.to_datetime(movements["date"]).dt.date)
            replace_table(conn, "stock_movements", dated, schema)
            if price_promotions is not None:
                dated = price_promotions.assign(date=pd.to_datetime(price_promotions["date"]).dt.date)
                replace_table(conn, "price_promotions", dated, schema)


# PostgreSQL's protocol takes at most 65,535 parameters per statement: a multi-row INSERT of
# ``rows x columns`` values must stay under it (20,000 order lines x 5 columns failed).
MAX_PARAMETERS = 60_000


def replace_table(conn: Any, name: str, frame: pd.DataFrame, schema: str | None = None) -> None:
    """Replace table ``name`` with ``frame`` inside the caller's transaction, in multi-row INSERTs
    on PostgreSQL (one round trip per chunk) sized to its parameter limit."""
    postgres = conn.dialect.name == "postgresql"
    frame.to_sql(
        name, conn, schema=schema, if_exists="replace", index=False,
        chunksize=max(1, MAX_PARAMETERS // max(1, len(frame.columns))) if postgres else 20_000,
        method="multi" if postgres else None,
    )  # fmt: skip
