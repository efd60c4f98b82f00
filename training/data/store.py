"""Write source tables and pipeline outputs through a SQLAlchemy engine, transactionally.

Outputs carry ``run_id`` in their key: writing a run deletes that run's rows and inserts the
new ones in one transaction, so re-running a run id replaces its outputs and never
duplicates them, and a failure half-way leaves the previous rows in place.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime, nullable=False)


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


def write_output(engine: Engine, table: str, df: pd.DataFrame, run_id: str, schema: str | None = None) -> int:
    """Replace the rows of ``run_id`` in ``table`` with ``df`` (one transaction); returns rows written."""
    if table not in OUTPUT_TABLES:
        raise ValueError(f"unknown output table {table!r}; expected one of {OUTPUT_TABLES}")
    t = _tables(schema)[table]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = df.assign(run_id=run_id, created_at=now)
    if "ds" in frame.columns:
        frame["ds"] = pd.to_datetime(frame["ds"]).dt.date
    rows = _records(frame, [c.name for c in t.columns])
    with engine.begin() as conn:
        t.create(conn, checkfirst=True)
        _add_missing_columns(conn, t)
        conn.execute(t.delete().where(t.c.run_id == run_id))
        for i in range(0, len(rows), 5000):
            conn.execute(t.insert(), rows[i : i + 5000])
    return len(rows)


def read_output(engine: Engine, table: str, run_id: str | None = None, schema: str | None = None) -> pd.DataFrame:
    t = _tables(schema)[table]
    q = sa.select(t)
    if run_id is not None:
        q = q.where(t.c.run_id == run_id)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(q).mappings().all())


def prune_quarantine(engine: Engine, older_than_days: int, schema: str | None = None) -> int:
    """Delete quarantined rows past their retention; returns how many were removed."""
    t = _tables(schema)["stock_quarantine"]
    limit = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
    with engine.begin() as conn:
        if not sa.inspect(conn).has_table("stock_quarantine", schema=schema):
            return 0
        return conn.execute(t.delete().where(t.c.created_at < limit)).rowcount


def write_source_tables(
    engine: Engine, products: pd.DataFrame, movements: pd.DataFrame, schema: str | None = None
) -> None:
    """Replace the source tables with a catalogue (used by ``stockml demo-data``), atomically."""
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
