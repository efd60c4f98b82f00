"""The outcome store's tables and records (see :mod:`serving.bentos.outcomes` for how they are written).

- ``serving_forecasts``: one row per served SKU forecast (``forecast_id``, sku, model name,
  version, alias, horizon, MASE scale of the history, the point forecasts as JSON, cached, when).
- ``serving_feedback``: one row per scored (forecast_id, ds); the primary key makes feedback
  idempotent: a second actual for the same week is not counted again.
- ``serving_posteriors``: Beta(alpha, beta) and outcome count per (model name, version).
- ``serving_bandit_decisions``: promote / promote_refused / stop decisions with their evidence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text

metadata = MetaData()

forecasts = Table(
    "serving_forecasts",
    metadata,
    Column("forecast_id", String(64), primary_key=True),
    Column("sku", String(200), nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("alias", String(32), nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("scale", Float, nullable=False),
    Column("points", Text, nullable=False),  # JSON {"YYYY-MM-DD": yhat}
    Column("cached", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
feedback = Table(
    "serving_feedback",
    metadata,
    Column("forecast_id", String(64), primary_key=True),
    Column("ds", String(10), primary_key=True),
    Column("y", Float, nullable=False),
    Column("yhat", Float, nullable=True),
    Column("reward", Float, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
posteriors = Table(
    "serving_posteriors",
    metadata,
    Column("model_name", String(200), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("alpha", Float, nullable=False),
    Column("beta", Float, nullable=False),
    Column("n", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
decisions = Table(
    "serving_bandit_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), nullable=False),
    Column("champion_version", String(32), nullable=False),
    Column("challenger_version", String(32), nullable=False),
    Column("action", String(32), nullable=False),  # promote | promote_refused | promote_failed | stop
    Column("p_better", Float, nullable=True),
    Column("challenger_n", Integer, nullable=False),
    Column("details", Text, nullable=False),  # JSON
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_url(home: Path | str, url: str | None = None) -> str:
    """``url`` (the ``serving.db_url`` setting) or ``sqlite:///<home>/serving.db``."""
    if url:
        return url
    path = Path(home).expanduser().resolve() / "serving.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class ServedForecast:
    forecast_id: str
    sku: str
    model_name: str
    model_version: str
    alias: str
    horizon: int
    scale: float
    points: dict[str, float | None]  # ds (ISO week start) -> yhat
    cached: bool = False


@dataclass
class ScoredItem:
    forecast_id: str
    model_version: str | None = None
    reward: float | None = None  # mean reward of the points counted now
    counted: int = 0
    duplicates: int = 0
    points: list[dict[str, Any]] | None = None
    error: str | None = None


def default_log_dir(home: Path | str, folder: Path | str | None = None) -> Path:
    """``folder`` (the ``serving.record_log_dir`` setting) or ``<home>/serving_records``."""
    return Path(folder) if folder else Path(home).expanduser().resolve() / "serving_records"
