"""The output tables' contract: definitions, the bookkeeping every row carries, the store protocol.

Outputs carry ``run_id`` in their key: writing a run replaces that run's rows and never
duplicates them. The SQL store (:mod:`training.data.sql_store`) and the Hive store
(:mod:`training.data.hive_store`) both implement :class:`OutputStore` over these definitions;
:mod:`training.data.store` picks one for a target.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

import pandas as pd
import sqlalchemy as sa


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
