"""The outcome store: served forecasts, their feedback, the bandit posteriors and decisions.

SQLAlchemy Core over SQLite (``<STOCKML_HOME>/serving.db``, the default) or Postgres
(``STOCKML_SERVING__DB_URL``, e.g. ``postgresql+psycopg://user:pw@host/db``). Every write is one
transaction, so a crash never leaves feedback counted without its posterior update (or the
reverse), and the state survives restarts and is shared by all workers that use the same DB.

Tables (created when missing):

- ``serving_forecasts``: one row per served SKU forecast (``forecast_id``, sku, model name,
  version, alias, horizon, MASE scale of the history, the point forecasts as JSON, cached, when).
- ``serving_feedback``: one row per scored (forecast_id, ds); the primary key makes feedback
  idempotent: a second actual for the same week is not counted again.
- ``serving_posteriors``: Beta(alpha, beta) and outcome count per (model name, version).
- ``serving_bandit_decisions``: promote / promote_refused / stop decisions with their evidence.

**Write-behind of served forecasts.** ``/forecast`` does not write its ``serving_forecasts`` rows
itself: :meth:`OutcomeStore.enqueue_forecasts` puts them on an in-process queue and a background
thread inserts them in batches (one transaction per batch) every ``STOCKML_SERVING__RECORD_FLUSH_S``
seconds (default 0.2; 0 writes synchronously, as before). Semantics:

- a worker's own reads see its queued rows: :meth:`score` (``/feedback``) and :meth:`forecast` flush
  the queue first, so feedback for a forecast just served by the same worker always finds it;
- a graceful stop (BentoML's shutdown hook calls :meth:`close`, and an ``atexit`` hook) flushes it;
- what is *not* guaranteed: rows of the last flush interval are lost if the process is killed
  (SIGKILL, OOM, power loss), and with several workers on one database another worker sees a row
  only after the serving worker's next flush (≤ the interval). Such forecast ids get "unknown
  forecast_id" from ``/feedback``, exactly as when the store was down at serving time (that
  failure was already logged and not turned into a failed forecast). A served forecast is a
  record for scoring, not a transaction the client depends on, so the trade is taken;
- a failed batch insert is logged and retried at the next flush (rows are kept, up to
  ``max_pending``; beyond it the oldest are dropped with an error in the log).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import logging
import threading
import time
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
from stockml.settings_serving import ServingSettings

log = logging.getLogger("stockml.serving.outcomes")

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


class OutcomeStore:
    def __init__(self, url: str, flush_s: float = 0.2, max_pending: int = 200_000) -> None:
        """``flush_s``: write-behind interval of :meth:`enqueue_forecasts` (the ``serving.record_flush_s``
        setting; 0: write synchronously)."""
        self.url = url
        self.flush_s = max(0.0, flush_s)
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch insert at a time (keeps flush() ordered)
        self._wake = threading.Event()
        self._closed = False
        self._writer: threading.Thread | None = None
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
    def from_settings(cls, home: Path | str, serving: ServingSettings) -> OutcomeStore:
        return cls(default_url(home, serving.db_url), flush_s=serving.record_flush_s)

    def _insert(self, table: Table):
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    # ---------------------------------------------------------------- forecasts

    @staticmethod
    def _rows(served: Iterable[ServedForecast]) -> list[dict[str, Any]]:
        now = _now()
        return [
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
                "created_at": now,
            }
            for s in served
        ]

    def record_forecasts(self, served: Iterable[ServedForecast]) -> int:
        """Insert now, in one transaction (see :meth:`enqueue_forecasts` for the request path)."""
        rows = self._rows(served)
        if rows:
            with self.engine.begin() as conn:
                conn.execute(forecasts.insert(), rows)
        return len(rows)

    def enqueue_forecasts(self, served: Iterable[ServedForecast]) -> int:
        """Queue the rows for the background writer (synchronous when ``flush_s`` is 0 or the store is
        closed). Never blocks on the database."""
        rows = self._rows(served)
        if not rows:
            return 0
        with self._pending_lock:  # (close() sets _closed under this lock: a row is queued or written, never lost)
            queue_it = self.flush_s > 0 and not self._closed
            if queue_it:
                self._pending.extend(rows)
                over = len(self._pending) - self.max_pending
                if over > 0:
                    del self._pending[:over]
                    log.error("outcome store: %d queued served-forecast row(s) dropped (database unreachable?)", over)
                if self._writer is None:
                    self._start_writer()
        if not queue_it:
            with self.engine.begin() as conn:
                conn.execute(forecasts.insert(), rows)
        return len(rows)

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="stockml-outcomes-writer", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # logged in flush; the rows stay queued for the next round
                time.sleep(min(5.0, 10 * self.flush_s))

    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write the queued rows now (one transaction); returns how many. On failure the rows are put
        back at the head of the queue and the error is re-raised."""
        with self._write_lock:
            with self._pending_lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                with self.engine.begin() as conn:
                    # idempotent: a batch whose commit went through but whose acknowledgement was lost is
                    # retried without a duplicate-key error blocking the queue
                    conn.execute(self._insert(forecasts).on_conflict_do_nothing(), rows)
            except Exception:
                log.exception("outcome store: writing %d served-forecast row(s) failed; retrying later", len(rows))
                with self._pending_lock:
                    self._pending[:0] = rows
                raise
            return len(rows)

    def close(self) -> None:
        """Flush what is queued and stop the writer (later enqueues write synchronously)."""
        with self._pending_lock:
            self._closed = True
        self._wake.set()
        writer, self._writer = self._writer, None
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout=10)
        try:
            self.flush()
        except Exception:
            log.error("outcome store: %d served-forecast row(s) could not be written at shutdown", self.pending())

    def forecast(self, forecast_id: str) -> dict[str, Any] | None:
        self._flush_quietly()
        with self.engine.connect() as conn:
            row = conn.execute(select(forecasts).where(forecasts.c.forecast_id == forecast_id)).mappings().first()
        return dict(row) if row else None

    # ---------------------------------------------------------------- feedback

    def score(self, model_name: str, items: list[tuple[str, list[tuple[str, float]]]]) -> list[ScoredItem]:
        """Score [(forecast_id, [(week ds, y), ...]), ...] and update the posteriors, in one transaction.

        A (forecast_id, ds) already scored is not counted again (``duplicates``); a ds that is not
        one of the forecast's weeks is reported per point; an unknown forecast_id per item.
        """
        self._flush_quietly()  # this worker's queued served forecasts must be visible to the scoring
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

    def _flush_quietly(self) -> None:
        if self._pending:
            with contextlib.suppress(Exception):  # logged in flush; the rows already written are still right
                self.flush()

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
