"""The served-forecast write-ahead log: a record appended before the answer survives ``kill -9`` of its
process and is folded into the outcome store exactly once; a live worker's segment is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.bentos.outcomes import OutcomeStore, ServedForecast
from serving.bentos.record_log import RecordLog, read_segment

REPO = Path(__file__).resolve().parents[3]

# a worker that records `n` served forecasts (the writer would fold them in only after an hour), says
# so, and waits to be killed: what it acknowledged is only in its record log
WORKER = textwrap.dedent(
    """
    import sys, time
    from serving.bentos.outcomes import OutcomeStore, ServedForecast
    url, log_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = OutcomeStore(url, flush_s=3600, log_dir=log_dir)
    for i in range(n):
        store.enqueue_forecasts([ServedForecast(f"f{i}", "S1", "m", "1", "champion", 4, 1.0, {"2026-01-05": 1.0})])
    print("acknowledged", n, flush=True)
    time.sleep(600)
    """
)


def _served(fid: str) -> ServedForecast:
    return ServedForecast(fid, "S1", "m", "1", "champion", 4, 2.0, {"2026-01-05": 3.0})


def _rows(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT forecast_id FROM serving_forecasts ORDER BY forecast_id"))]
    engine.dispose()
    return ids


def _start_worker(url: str, log_dir: Path, n: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, str(log_dir), str(n)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == f"acknowledged {n}", line
    return proc


def test_killed_worker_loses_no_acknowledged_record(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    log_dir = tmp_path / "records"
    OutcomeStore(url, log_dir=log_dir).close()  # the tables exist before the worker starts
    proc = _start_worker(url, log_dir, 250)
    try:
        live = OutcomeStore(url, flush_s=3600, log_dir=log_dir)
        assert live.wal is not None and live.wal.orphans() == []  # the worker lives: its segment is not ours
        assert live.recover() == 0 and _rows(url) == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(live.wal.orphans()) == 1  # its lock died with it
    assert live.recover() == 250
    ids = _rows(url)
    assert len(ids) == 250 and len(set(ids)) == 250
    assert list(log_dir.glob("*.jsonl")) == []  # folded in, then dropped
    assert live.recover() == 0  # nothing twice
    live.close()


def test_feedback_path_finds_forecasts_of_a_dead_worker(tmp_path):
    """``forecast`` (and ``score``, the /feedback path) fold in orphaned segments before they look."""
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    log_dir = tmp_path / "records"
    OutcomeStore(url, log_dir=log_dir).close()
    proc = _start_worker(url, log_dir, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    other = OutcomeStore(url, flush_s=3600, log_dir=log_dir)
    scored = other.score("m", [("f1", [("2026-01-05", 1.0)])])
    assert scored[0].error is None and scored[0].counted == 1
    other.close()


def test_flush_folds_rows_and_drops_their_segment(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = OutcomeStore(url, flush_s=3600, log_dir=tmp_path / "records")
    store.enqueue_forecasts([_served("a"), _served("b")])
    segs = list((tmp_path / "records").glob("*.jsonl"))
    assert len(segs) == 1 and len(read_segment(segs[0])[0]) == 2  # durable before any flush
    assert store.flush() == 2
    assert list((tmp_path / "records").glob("*.jsonl")) == []
    store.enqueue_forecasts([_served("c")])
    store.close()  # a graceful stop flushes and leaves no segment behind
    assert _rows(url) == ["a", "b", "c"]
    assert list((tmp_path / "records").glob("*.jsonl")) == []


def test_failed_flush_keeps_rows_in_memory_and_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = OutcomeStore(url, flush_s=3600, log_dir=tmp_path / "records")
    store.enqueue_forecasts([_served("a")])
    good = store.engine
    store.engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")  # cannot even be opened
    with pytest.raises(sa.exc.OperationalError):
        store.flush()
    assert store.pending() == 1 and len(list((tmp_path / "records").glob("*.jsonl"))) == 1
    store.engine = good
    store.enqueue_forecasts([_served("b")])
    assert store.flush() == 2
    assert list((tmp_path / "records").glob("*.jsonl")) == []
    store.close()
    assert _rows(url) == ["a", "b"]


def test_torn_last_line_is_skipped(tmp_path):
    log = RecordLog(tmp_path)
    log.append([{"forecast_id": "x", "created_at": "2026-01-05T00:00:00+00:00"}])
    log.close()
    seg = next(tmp_path.glob("*.jsonl"))
    with seg.open("ab") as fh:
        fh.write(b'{"forecast_id": "y", "crea')  # a write cut short by the crash
    rows, torn = read_segment(seg)
    assert [r["forecast_id"] for r in rows] == ["x"] and torn == 1


def test_synchronous_mode_has_no_log(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 's.db'}", flush_s=0, log_dir=tmp_path / "records")
    assert store.wal is None
    store.enqueue_forecasts([_served("a")])
    assert _rows(f"sqlite:///{tmp_path / 's.db'}") == ["a"]
    store.close()
