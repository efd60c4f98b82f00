"""The output tables' contract: definitions, the bookkeeping every row carries, the store protocol.

Outputs are keyed by what the run consumed, not by which run it was: an :class:`OutputKey` is
(``pipeline``, ``cutoff_week``), the DAG (or ``cli``) that wrote them and the Monday of the last
complete week of data it read. Ops re-run things in ways that make new Airflow run ids
(triggering the same logical date again, an Asset-triggered run over data already processed,
which has no logical date at all in Airflow 3): keyed by the run id, each would add a second set
of rows. Keyed by the data, writing replaces the rows of that key. ``run_id`` stays a plain
column: which run wrote the rows now in place.

The SQL store (:mod:`training.data.sql_store`) and the Hive store
(:mod:`training.data.hive_store`) both implement :class:`OutputStore` over these definitions;
:mod:`training.data.store` picks one for a target.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd
import sqlalchemy as sa

KEY_COLUMNS = ("pipeline", "cutoff_week")
# Where a table of the old layout (keyed by run_id) is kept when a write recreates it.
LEGACY_SUFFIX = "__runid_keyed"


@dataclass(frozen=True)
class OutputKey:
    """The key a run's output rows are replaced under: the pipeline and the data cut-off it read.

    ``cutoff_week`` is the ISO date (``YYYY-MM-DD``) of the Monday of the last complete week
    the run's demand covers; a string, so the SQL and Hive layouts (where it is a partition
    value) hold the same thing.
    """

    pipeline: str
    cutoff_week: str

    @classmethod
    def of(cls, pipeline: str, last_week: object) -> OutputKey:
        """The key of ``pipeline`` over data whose last complete week starts on ``last_week``."""
        if not pipeline:
            raise ValueError("an output key needs a pipeline name")
        week = pd.Timestamp(last_week)  # type: ignore[arg-type]
        if pd.isna(week):
            raise ValueError(f"an output key needs a data cut-off week, got {last_week!r}")
        return cls(pipeline, week.date().isoformat())


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column("pipeline", sa.String(64), primary_key=True),
        sa.Column("cutoff_week", sa.String(10), primary_key=True),
    ]


def _run_id() -> sa.Column:
    return sa.Column("run_id", sa.String(128), nullable=False)


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
            *_key_columns(),
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
            sa.Column("hdbscan_cluster", sa.Integer),
            sa.Column("gmm_cluster", sa.Integer),
            sa.Column("gmm_probability", sa.Float),
            sa.Column("season_strength", sa.Float),
            sa.Column("season_cluster", sa.Integer),
            sa.Column("season_profile", sa.String(32)),
            sa.Column("anomaly_score", sa.Float),
            sa.Column("is_anomaly", sa.Boolean),
            sa.Column("anomaly_reasons", sa.Text),
            _run_id(),
            _created(),
        ),
        "stock_forecasts": sa.Table(
            "stock_forecasts",
            md,
            *_key_columns(),
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
            _run_id(),
            _created(),
        ),
        "stock_related": sa.Table(
            "stock_related",
            md,
            *_key_columns(),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("related_sku", sa.String(64), primary_key=True),
            sa.Column("support", sa.Float),
            sa.Column("confidence", sa.Float),
            sa.Column("lift", sa.Float),
            _run_id(),
            _created(),
        ),
        # the ingest's weekly contracts (training.data.weekly, training.data.inventory), published for
        # readers on other machines than the pipeline (the service's by-SKU calls)
        "stock_weekly_demand": sa.Table(
            "stock_weekly_demand",
            md,
            *_key_columns(),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("ds", sa.Date, primary_key=True),
            sa.Column("y", sa.Float),
            _run_id(),
            _created(),
        ),
        "stock_weekly_inventory": sa.Table(
            "stock_weekly_inventory",
            md,
            *_key_columns(),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("ds", sa.Date, primary_key=True),
            sa.Column("on_hand", sa.Float),  # NULL: no stock count known yet
            sa.Column("receipts", sa.Float),
            sa.Column("censored", sa.Boolean),
            _run_id(),
            _created(),
        ),
        "stock_orders": sa.Table(
            "stock_orders",
            md,
            *_key_columns(),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("as_of_week", sa.Date),  # the inventory week the recommendation starts from
            sa.Column("on_hand", sa.Float),
            sa.Column("order_qty", sa.Float),  # NULL: no policy could be tuned for the SKU (see reason)
            sa.Column("policy", sa.String(32)),
            sa.Column("expected_cost_per_period", sa.Float),
            sa.Column("reason", sa.Text),
            sa.Column("model_version", sa.String(64)),
            _run_id(),
            _created(),
        ),
        # stock_monitoring's verdicts, one row per check and monitored day (the key's cutoff_week is the
        # logical date's day): figures as JSON, ``due`` when the check asked for a retraining event
        "stock_monitoring": sa.Table(
            "stock_monitoring",
            md,
            *_key_columns(),
            sa.Column("check_name", sa.String(32), primary_key=True),
            sa.Column("flagged", sa.Boolean),
            sa.Column("due", sa.Boolean),
            sa.Column("status", sa.Text),
            sa.Column("figures", sa.Text),
            sa.Column("logical_date", sa.DateTime),
            sa.Column("demand_cutoff_week", sa.String(10)),
            _run_id(),
            _created(),
        ),
        # what became of each alert of a monitored day on each channel (stockml.steps.alert_deliveries): a
        # sibling of stock_monitoring, not rows in it, because a write replaces a key's rows (the check's
        # re-run would erase the deliveries, the notify task's write the verdicts) and check_name, in its
        # key, allows one row per check where a day has one delivery per alert and channel
        "stock_alert_deliveries": sa.Table(
            "stock_alert_deliveries",
            md,
            *_key_columns(),
            sa.Column("alert_id", sa.String(16), primary_key=True),  # monitoring.alerts.Alert.fingerprint
            sa.Column("channel", sa.String(16), primary_key=True),  # webhook | email
            sa.Column("kind", sa.String(32)),
            sa.Column("severity", sa.String(16)),
            sa.Column("title", sa.Text),
            sa.Column("target", sa.Text),  # redacted: a webhook as scheme://host[:port]/…, e-mail recipients
            sa.Column("ok", sa.Boolean),
            sa.Column("attempts", sa.Integer),
            sa.Column("status", sa.Integer),  # the last HTTP status or SMTP reply code; NULL: no answer
            sa.Column("error", sa.Text),
            sa.Column("delivered_at", sa.DateTime),  # when the delivery ended (UTC), ok or not
            sa.Column("logical_date", sa.DateTime),
            _run_id(),
            _created(),
        ),
        "stock_quarantine": sa.Table(
            "stock_quarantine",
            md,
            sa.Column("pipeline", sa.String(64), nullable=False),
            sa.Column("cutoff_week", sa.String(10), nullable=False),
            sa.Column("source_table", sa.String(64)),
            sa.Column("reason", sa.String(128)),
            sa.Column("sku", sa.String(64)),
            sa.Column("date", sa.String(32)),
            sa.Column("payload", sa.Text),
            _run_id(),
            _created(),
            sa.Index("ix_stock_quarantine_key", "pipeline", "cutoff_week"),
        ),
    }


OUTPUT_TABLES = (
    "stock_classes",
    "stock_forecasts",
    "stock_related",
    "stock_weekly_demand",
    "stock_weekly_inventory",
    "stock_orders",
    "stock_quarantine",
    "stock_monitoring",
    "stock_alert_deliveries",
)


def check_output_table(table: str) -> None:
    if table not in OUTPUT_TABLES:
        raise ValueError(f"unknown output table {table!r}; expected one of {OUTPUT_TABLES}")


def output_frame(
    table: str, df: pd.DataFrame, key: OutputKey, run_id: str, created_at: dt.datetime | None = None
) -> pd.DataFrame:
    """``df`` with the columns every output row carries: its key, the run that wrote it, when."""
    now = created_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = df.assign(pipeline=key.pipeline, cutoff_week=key.cutoff_week, run_id=run_id, created_at=now)
    if "ds" in frame.columns:
        frame["ds"] = pd.to_datetime(frame["ds"]).dt.date
    return frame


@runtime_checkable
class OutputStore(Protocol):
    """Where pipeline outputs (and the demo source tables) are written."""

    def write(self, table: str, df: pd.DataFrame, key: OutputKey, run_id: str, schema: str | None = None) -> int: ...

    def read(
        self, table: str, run_id: str | None = None, schema: str | None = None, key: OutputKey | None = None
    ) -> pd.DataFrame: ...

    def keys(self, table: str, schema: str | None = None) -> pd.DataFrame: ...

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int: ...

    def write_source_tables(
        self,
        products: pd.DataFrame,
        movements: pd.DataFrame,
        schema: str | None = None,
        price_promotions: pd.DataFrame | None = None,
    ) -> None: ...
