"""The outcome store's SQLite file is switched to WAL even while another worker holds its lock.

Two service workers starting together once failed in CI with "database is locked" on
``PRAGMA journal_mode=WAL`` (SQLite answers that at once, without its busy handler)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from serving.bentos.outcomes import _enable_wal


def test_wal_is_enabled_once_the_other_workers_lock_is_released(tmp_path) -> None:
    path = tmp_path / "outcomes.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # the other worker, mid-transaction
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    other = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    started = time.monotonic()
    _enable_wal(other.cursor(), wait_s=10)
    assert time.monotonic() - started >= 0.4  # it waited for the lock instead of failing
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_lock_never_released_fails_after_the_wait(tmp_path) -> None:
    path = tmp_path / "outcomes.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _enable_wal(other.cursor(), wait_s=0.3)
    holder.execute("COMMIT")
