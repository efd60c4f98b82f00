"""Outputs and source tables in a SQL database through SQLAlchemy (SQLite, PostgreSQL, ...).

A run's rows are deleted and the new ones inserted in one transaction, so a failure half-way
leaves the previous rows in place.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from training.data.output_schema import check_output_table, output_frame, output_tables


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
        t = output_tables(schema)[table]
        rows = _records(output_frame(table, df, run_id), [c.name for c in t.columns])
        with self.engine.begin() as conn:
            t.create(conn, checkfirst=True)
            _add_missing_columns(conn, t)
            conn.execute(t.delete().where(t.c.run_id == run_id))
            for i in range(0, len(rows), 5000):
                conn.execute(t.insert(), rows[i : i + 5000])
        return len(rows)

    def read(self, table: str, run_id: str | None = None, schema: str | None = None) -> pd.DataFrame:
        t = output_tables(schema)[table]
        q = sa.select(t)
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).mappings().all())

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int:
        t = output_tables(schema)["stock_quarantine"]
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
