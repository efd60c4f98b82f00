"""A write-ahead log for served-forecast records: durable with the answer, folded into the database later.

``/forecast`` must not wait for a database round trip, yet a forecast whose answer went out must keep
its record (``/feedback`` on its ``forecast_id`` needs it), even when the worker is killed the next
moment. So each record is appended to this log *before* the answer is sent, with one ``write(2)`` on
a file opened ``O_APPEND``, and the store's background writer inserts the rows in batches and then
drops the segment it has folded in.

- **What survives what.** Once ``write`` has returned, the bytes are in the kernel's page cache: a
  killed process (SIGKILL, OOM) loses nothing. A power loss or kernel crash can lose the last seconds
  unless ``fsync`` is on (the ``serving.record_fsync`` setting), which costs a disk flush per answer.
- **Segments and ownership.** Each process appends to its own segment,
  ``<dir>/<pid>-<ns>.jsonl``, and holds an exclusive ``flock`` on it for as long as it lives (taken
  before the file gets its name, so no other process can see it unlocked while it is in use). The
  lock is released by the kernel when the process dies, however it dies, so a segment whose lock can
  be taken is an orphan: :meth:`RecordLog.orphans` lists them and the store folds them in at start
  and from its writer (a worker restarted by the server, or the other worker of the same service).
- **Rotation.** :meth:`RecordLog.rotate` closes the current segment and opens a new one, under the
  store's queue lock, so the rows taken from the in-memory queue are exactly the rows of the closed
  segments; once they are in the database those segments are deleted (:meth:`RecordLog.drop`). A
  crash between the insert and the delete replays rows already written, which the insert ignores
  (``forecast_id`` is the primary key).
- **Torn lines.** A line cut short by a crash inside ``write`` belongs to an answer that was never
  sent; :func:`read_segment` skips it (and counts it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("stockml.serving.outcomes")

SUFFIX = ".jsonl"


def _encode(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, default=_iso, separators=(",", ":")) + "\n").encode()


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_segment(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(rows, torn lines skipped) of one segment; ``created_at`` parsed back to a datetime."""
    rows: list[dict[str, Any]] = []
    torn = 0
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line)
            row["created_at"] = dt.datetime.fromisoformat(row["created_at"])
        except (ValueError, KeyError, TypeError):
            torn += 1
            continue
        rows.append(row)
    return rows, torn


class RecordLog:
    """This process's append-only segment of served-forecast rows, and the orphans of dead processes."""

    def __init__(self, folder: Path | str, fsync: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._fd: int | None = None
        self._path: Path | None = None
        self.closed_segments: list[Path] = []  # rotated out, rows not yet confirmed in the database

    # ------------------------------------------------------------ this process's segment

    def _open(self) -> None:
        path = self.folder / f"{os.getpid()}-{time.time_ns()}{SUFFIX}"
        tmp = path.with_suffix(".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live; the kernel drops it when we die
        os.rename(tmp, path)  # visible to orphans() only once locked: never folded (and deleted) while in use
        self._fd, self._path = fd, path

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append the rows with one ``write`` (and an ``fsync`` when configured). Raises ``OSError``."""
        if self._fd is None or os.getpid() != self._owner_pid():
            self._open()  # first use, or a forked child must not write into its parent's segment
        data = b"".join(_encode(r) for r in rows)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)  # type: ignore[arg-type]

    def _owner_pid(self) -> int:
        return int(self._path.name.split("-", 1)[0]) if self._path else -1

    def rotate(self) -> None:
        """Close the current segment (its rows are about to be written) and start the next on the next append."""
        if self._fd is not None:
            if self._owner_pid() == os.getpid():
                os.close(self._fd)  # the lock goes with it: the file may now be folded by anyone, which is safe
                self.closed_segments.append(self._path)  # type: ignore[arg-type]
            self._fd, self._path = None, None

    def drop(self, segments: list[Path]) -> None:
        """Delete segments whose rows are in the database."""
        for path in segments:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.closed_segments = [p for p in self.closed_segments if p not in segments]

    def close(self) -> None:
        self.rotate()

    # ------------------------------------------------------------ orphans

    def orphans(self) -> list[Path]:
        """Segments no live process holds (their writer died), oldest first; not this process's own."""
        out = []
        mine = f"{os.getpid()}-"
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            if path.name.startswith(mine):
                continue  # this process folds its own segments (flush), whatever state they are in
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            finally:
                os.close(fd)
            out.append(path)
        return out
