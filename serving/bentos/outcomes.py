"""The outcome store: served forecasts, their feedback, the bandit posteriors and decisions.

SQLAlchemy Core over SQLite (``<STOCKML_HOME>/serving.db``, the default) or Postgres
(``STOCKML_SERVING__DB_URL``, e.g. ``postgresql+psycopg://user:pw@host/db``). Every write is one
transaction, so a crash never leaves feedback counted without its posterior update (or the
reverse), and the state survives restarts and is shared by all workers that use the same DB.

Tables (created when missing): :mod:`serving.bentos.outcome_tables`.

**Served forecasts: durable with the answer, written behind it.** ``/forecast`` does not wait for
the database: :meth:`OutcomeStore.enqueue_forecasts` appends the rows to a write-ahead log
(:mod:`serving.bentos.record_log`, one ``write`` per answer, before the answer is sent) and to an
in-process queue; a background thread inserts the queue in batches (one transaction per batch) every
``STOCKML_SERVING__RECORD_FLUSH_S`` seconds (default 0.2; 0: no log, written synchronously) and then
drops the log segment it folded in. Semantics:

- an answered forecast's record survives the worker being killed (SIGKILL, OOM): the segment of a
  dead process is folded in by the next store that starts on the same folder, or by a live worker's
  writer (:meth:`recover`); a power loss too with ``STOCKML_SERVING__RECORD_FSYNC=true``;
- a worker's own reads see its queued rows: :meth:`score` (``/feedback``) and :meth:`forecast` flush
  the queue (and fold orphaned segments) first, so feedback for an answered forecast finds it;
- with several workers on one database another worker sees a row only after the serving worker's
  next flush (≤ the interval);
- a failed batch insert is logged and retried at the next flush (rows are kept in memory up to
  ``max_pending``, and in the log until they are in the database);
- the insert ignores rows already there (``forecast_id`` is the key), so a replayed segment never
  duplicates a record.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, select, update
from sqlalchemy.engine import Engine

from serving.bentos.bandit import PRIOR, Posterior, reward
from serving.bentos.outcome_tables import (
    ScoredItem,
    ServedForecast,
    decisions,
    default_log_dir,
    default_url,
    feedback,
    forecasts,
    metadata,
    posteriors,
    utc_now,
)
from serving.bentos.record_log import RecordLog, read_segment
from stockml.settings_serving import ServingSettings

log = logging.getLogger("stockml.serving.outcomes")


class OutcomeStore:
    RECOVER_EVERY_S = 10.0  # how often a live writer looks for the log segments of dead workers

    def __init__(
        self,
        url: str,
        flush_s: float = 0.2,
        max_pending: int = 200_000,
        log_dir: Path | str | None = None,
        fsync: bool = False,
    ) -> None:
        """``flush_s``: write-behind interval of :meth:`enqueue_forecasts` (the ``serving.record_flush_s``
        setting; 0: write synchronously). ``log_dir``: the write-ahead log's folder (None: no log, so a
        killed process loses its queued rows; the service always passes one)."""
        self.url = url
        self.flush_s = max(0.0, flush_s)
        self.max_pending = max_pending
        self.wal = RecordLog(log_dir, fsync=fsync) if log_dir is not None and self.flush_s > 0 else None
        self._last_recover = 0.0
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
        self._recover_quietly()

    @classmethod
    def from_settings(cls, home: Path | str, serving: ServingSettings) -> OutcomeStore:
        return cls(
            default_url(home, serving.db_url),
            flush_s=serving.record_flush_s,
            log_dir=default_log_dir(home, serving.record_log_dir),
            fsync=serving.record_fsync,
        )

    def _insert(self, table: Table):
        if self.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return insert(table)

    # ---------------------------------------------------------------- forecasts

    @staticmethod
    def _rows(served: Iterable[ServedForecast]) -> list[dict[str, Any]]:
        now = utc_now()
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
            if queue_it and self.wal is not None:
                try:
                    self.wal.append(rows)  # durable before the answer goes out
                except OSError:
                    log.exception("outcome store: the record log cannot be written; writing to the store now")
                    queue_it = False
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
                if time.monotonic() - self._last_recover > self.RECOVER_EVERY_S:
                    self.recover()
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
                if self.wal is not None:
                    self.wal.rotate()  # the closed segments hold exactly the rows taken (and any of a failed flush)
                    segments = list(self.wal.closed_segments)
            if not rows:
                if self.wal is not None:
                    self.wal.drop(segments)
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
            if self.wal is not None:
                self.wal.drop(segments)
            return len(rows)

    def recover(self) -> int:
        """Fold in the log segments of dead processes (their answered forecasts); returns the rows read.

        Safe to run from several workers at once: the insert ignores rows already in the store."""
        self._last_recover = time.monotonic()
        if self.wal is None:
            return 0
        total = 0
        for path in self.wal.orphans():
            rows, torn = read_segment(path)
            if rows:
                with self.engine.begin() as conn:
                    conn.execute(self._insert(forecasts).on_conflict_do_nothing(), rows)
            path.unlink(missing_ok=True)
            total += len(rows)
            log.info(
                "outcome store: folded in %d served-forecast record(s) of a stopped worker from %s%s",
                len(rows),
                path.name,
                f" ({torn} torn line(s) skipped: answers never sent)" if torn else "",
            )
        return total

    def _recover_quietly(self) -> None:
        try:
            self.recover()
        except Exception:
            log.exception("outcome store: folding in the record log failed; retrying later")

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
            log.error(
                "outcome store: %d served-forecast row(s) could not be written at shutdown (kept in the record log)",
                self.pending(),
            )
        if self.wal is not None:
            self.wal.close()

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
        now = utc_now()
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
        if self.wal is not None:
            self._recover_quietly()  # forecasts answered by a worker that has since died

    def _ensure(self, conn, name: str, version: str) -> None:
        conn.execute(
            self._insert(posteriors)
            .values(model_name=name, model_version=version, alpha=PRIOR[0], beta=PRIOR[1], n=0, updated_at=utc_now())
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
                    p_better=p_better, challenger_n=int(n), details=json.dumps(details, default=str),
                    created_at=utc_now(),
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
    cur.execute("PRAGMA busy_timeout=30000")
    _enable_wal(cur)
    cur.close()


def _enable_wal(cur, wait_s: float = 30.0) -> None:
    """Switch the file to WAL once; retry while another worker holds the lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
    (without calling the busy handler) when another connection is opening the same file: two
    service workers starting together failed here with "database is locked" (seen in CI).
    The mode is persistent, so a file already in WAL needs no change and no lock.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
