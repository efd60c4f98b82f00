"""The outcome store: served forecasts, their feedback, the bandit posteriors and decisions.

SQLAlchemy Core over SQLite (``<STOCKML_HOME>/serving.db``, the default) or Postgres
(``STOCKML_SERVING_DB_URL``, e.g. ``postgresql+psycopg://user:pw@host/db``). Every write is one
transaction, so a crash never leaves feedback counted without its posterior update (or the
reverse), and the state survives restarts and is shared by all workers that use the same DB.

Tables (created when missing):

- ``serving_forecasts``: one row per served SKU forecast (``forecast_id``, sku, model name,
  version, alias, horizon, MASE scale of the history, the point forecasts as JSON, cached, when).
- ``serving_feedback``: one row per scored (forecast_id, ds); the primary key makes feedback
  idempotent: a second actual for the same week is not counted again.
- ``serving_posteriors``: Beta(alpha, beta) and outcome count per (model name, version).
- ``serving_bandit_decisions``: promote / promote_refused / stop decisions with their evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine

from serving.bentos.bandit import PRIOR, Posterior, reward

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_url(home: Path | str) -> str:
    """``STOCKML_SERVING_DB_URL`` or ``sqlite:///<home>/serving.db``."""
    url = os.environ.get("STOCKML_SERVING_DB_URL", "").strip()
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


class OutcomeStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        metadata.create_all(self.engine)

    @classmethod
    def from_env(cls, home: Path | str) -> OutcomeStore:
        return cls(default_url(home))

    def _insert(self, table: Table):
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    # ---------------------------------------------------------------- forecasts

    def record_forecasts(self, served: Iterable[ServedForecast]) -> int:
        rows = [
            {
                "forecast_id": s.forecast_id,
                "sku": s.sku,
                "model_name": s.model_name,
                "model_version": s.model_version,
                "alias": s.alias,
                "horizon": s.horizon,
                "scale": float(s.scale),
                "points": json.dumps(s.points),
                "cached": bool(s.cached),
                "created_at": _now(),
            }
            for s in served
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(forecasts.insert(), rows)
        return len(rows)

    def forecast(self, forecast_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(forecasts).where(forecasts.c.forecast_id == forecast_id)).mappings().first()
        return dict(row) if row else None

    # ---------------------------------------------------------------- feedback

    def score(self, model_name: str, items: list[tuple[str, list[tuple[str, float]]]]) -> list[ScoredItem]:
        """Score [(forecast_id, [(week ds, y), ...]), ...] and update the posteriors, in one transaction.

        A (forecast_id, ds) already scored is not counted again (``duplicates``); a ds that is not
        one of the forecast's weeks is reported per point; an unknown forecast_id per item.
        """
        out: list[ScoredItem] = []
        deltas: dict[tuple[str, str], list[float]] = {}
        now = _now()
        with self.engine.begin() as conn:
            ids = list({fid for fid, _ in items})
            known = {
                r["forecast_id"]: r
                for r in conn.execute(select(forecasts).where(forecasts.c.forecast_id.in_(ids))).mappings()
            }
            for fid, actuals in items:
                row = known.get(fid)
                if row is None:
                    out.append(ScoredItem(fid, error="unknown forecast_id"))
                    continue
                item = ScoredItem(fid, model_version=row["model_version"], points=[])
                pts = json.loads(row["points"])
                new_rewards = []
                for ds, y in actuals:
                    if ds not in pts:
                        item.points.append({"ds": ds, "y": y, "error": "not one of this forecast's weeks"})
                        continue
                    r = reward(y, pts[ds], row["scale"])
                    res = conn.execute(
                        self._insert(feedback)
                        .values(
                            forecast_id=fid, ds=ds, y=y, yhat=pts[ds], reward=r, model_name=row["model_name"],
                            model_version=row["model_version"], created_at=now,
                        )
                        .on_conflict_do_nothing()
                        .returning(feedback.c.forecast_id)
                    )  # fmt: skip
                    counted = res.first() is not None  # nothing returned: this week was scored before
                    item.points.append({"ds": ds, "y": y, "yhat": pts[ds], "reward": r, "counted": counted})
                    if counted:
                        new_rewards.append(r)
                        deltas.setdefault((row["model_name"], row["model_version"]), []).append(r)
                    else:
                        item.duplicates += 1
                item.counted = len(new_rewards)
                item.reward = sum(new_rewards) / len(new_rewards) if new_rewards else None
                out.append(item)
            for (name, version), rewards in deltas.items():
                self._ensure(conn, name, version)
                conn.execute(
                    update(posteriors)
                    .where(posteriors.c.model_name == name, posteriors.c.model_version == version)
                    .values(
                        alpha=posteriors.c.alpha + sum(rewards),
                        beta=posteriors.c.beta + sum(1.0 - r for r in rewards),
                        n=posteriors.c.n + len(rewards),
                        updated_at=now,
                    )
                )
        return out

    def _ensure(self, conn, name: str, version: str) -> None:
        conn.execute(
            self._insert(posteriors)
            .values(model_name=name, model_version=version, alpha=PRIOR[0], beta=PRIOR[1], n=0, updated_at=_now())
            .on_conflict_do_nothing()
        )

    # ---------------------------------------------------------------- posteriors, decisions

    def posterior(self, name: str, version: str) -> Posterior:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(posteriors).where(
                        posteriors.c.model_name == name, posteriors.c.model_version == str(version)
                    )
                )
                .mappings()
                .first()
            )
        return Posterior(row["alpha"], row["beta"], int(row["n"])) if row else Posterior()

    def posteriors(self, name: str) -> dict[str, Posterior]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(posteriors).where(posteriors.c.model_name == name)).mappings().all()
        return {r["model_version"]: Posterior(r["alpha"], r["beta"], int(r["n"])) for r in rows}

    def record_decision(
        self, name: str, champion: str, challenger: str, action: str, p_better: float | None, n: int, **details: Any
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                decisions.insert().values(
                    model_name=name, champion_version=str(champion), challenger_version=str(challenger), action=action,
                    p_better=p_better, challenger_n=int(n), details=json.dumps(details, default=str), created_at=_now(),
                )
            )  # fmt: skip

    def decisions(self, name: str, champion: str | None = None, challenger: str | None = None) -> list[dict[str, Any]]:
        q = select(decisions).where(decisions.c.model_name == name)
        if champion is not None:
            q = q.where(decisions.c.champion_version == str(champion))
        if challenger is not None:
            q = q.where(decisions.c.challenger_version == str(challenger))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(decisions.c.id)).mappings().all()
        return [
            {**{k: v for k, v in r.items() if k != "details"}, "details": json.loads(r["details"])}
            | {"created_at": r["created_at"].isoformat() if r["created_at"] else None}
            for r in rows
        ]


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # isolation_level=None: the driver does not open transactions itself; "BEGIN IMMEDIATE" (on the
    # SQLAlchemy "begin" event) takes the write lock up front, so concurrent writers wait instead of
    # failing with "database is locked" on a lock upgrade.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
