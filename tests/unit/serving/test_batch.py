"""Batch jobs without a server: CSV validation, the job store, the worker, restarts, result formats."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
from serving_helpers import assert_xlsx_matches_csv

from serving.bentos.batch import (
    MAX_RESTARTS,
    RESULT_COLUMNS,
    BatchLimits,
    BatchRunner,
    CsvError,
    FormatUnavailable,
    JobStore,
    parse_csv,
    render,
    xlsx_available,
)

GOOD = b"sku,ds,y\nA,2024-01-01,3\nA,2024-01-08,4\nB,2024-01-01,0\nB,2024-01-15,2.5\n"


def test_parse_good_csv():
    df = parse_csv(b"\xef\xbb\xbf" + GOOD.replace(b"sku,ds,y", b" SKU , DS ,Y ,extra").replace(b"\n", b",x\n")[:-2])
    assert list(df.columns) == ["unique_id", "ds", "y"]
    assert df["unique_id"].tolist() == ["A", "A", "B", "B"] and df["y"].tolist() == [3, 4, 0, 2.5]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"sku,ds,y\n", "no rows"),
        (b"sku,y\nA,1\n", "missing column"),
        (GOOD + b"A,2024-01-15,x\n", r"row\(s\) 5"),
        (GOOD + b"A,2024-01-15,inf\n", "finite"),
        (GOOD + b"A,2024-01-15,-1\n", "negative"),
        (GOOD + b"A,2024-01-15,1e13\n", "larger than"),
        (GOOD + b"A,15/01/2024,1\n", "ds is not a date"),
        (GOOD + b"A,2300-01-01,1\n", "ds is not a date"),
        (GOOD + b",2024-01-15,1\n", "sku must be"),
        (b"sku,ds,y\nA,2024-01-01,1\nA,2024-01-03,1\n", "fewer than 2"),
        (b"sku,ds,y\nA,1990-01-01,1\nA,2024-01-03,1\n", "span more than"),
        (b"sku,ds,y\nA,2024-01-01,1\n\xff", "UTF-8"),
        (b'sku,ds,y\n"A,2024-01-01,1\n', "readable CSV"),
    ],
)
def test_parse_rejects(raw, reason):
    with pytest.raises(CsvError, match=reason):
        parse_csv(raw)


def test_parse_limits():
    with pytest.raises(CsvError, match="bytes"):
        parse_csv(GOOD, BatchLimits(max_bytes=10))
    with pytest.raises(CsvError, match="2 SKUs"):
        parse_csv(GOOD, BatchLimits(max_skus=1))


def _fake_forecast(history: pd.DataFrame, horizon: int) -> pd.DataFrame:
    rows = []
    for sku, part in history.groupby("unique_id"):
        last = part["ds"].max()
        for h in range(1, horizon + 1):
            m = float(part["y"].mean())
            rows.append(
                {"unique_id": sku, "ds": last + pd.Timedelta(weeks=h), "step": h, "yhat": m, "lo80": 0.0,
                 "hi80": m + 1, "lo95": 0.0, "hi95": m + 2, "method": "SES", "pattern": "smooth", "confidence": 0.5}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _wait(store: JobStore, job_id: str) -> None:
    deadline = time.time() + 30
    while store.load(job_id).state not in ("done", "failed"):
        assert time.time() < deadline
        time.sleep(0.02)


def test_job_runs_in_chunks_and_survives_a_restart(tmp_path):
    store = JobStore(tmp_path)
    frame = parse_csv(b"sku,ds,y\n" + b"".join(f"S{i},2024-01-01,1\nS{i},2024-01-08,{i}\n".encode() for i in range(7)))
    calls = []

    def forecast(h, horizon):
        calls.append(h["unique_id"].nunique())
        return _fake_forecast(h, horizon)

    runner = BatchRunner(store, lambda: ("m", "3", forecast), BatchLimits(chunk_skus=3))
    runner.start()
    job = store.create(frame, horizon=4)
    runner.submit(job)
    _wait(store, job.job_id)
    runner.stop()
    done = store.load(job.job_id)
    assert done.state == "done" and done.skus_done == 7 and done.progress == 1.0 and done.model_version == "3"
    assert calls == [3, 3, 1]
    df = pd.read_csv(store.result_path(job.job_id))
    assert list(df.columns) == RESULT_COLUMNS and len(df) == 28

    # a job left "running" by a crash is queued again by the next start, and finished ones are still there
    stale = store.create(frame, horizon=2)
    stale.state, stale.skus_done = "running", 3
    store.save(stale)
    again = BatchRunner(JobStore(tmp_path), lambda: ("m", "4", _fake_forecast), BatchLimits(chunk_skus=5))
    again.start()
    _wait(store, stale.job_id)
    again.stop()
    redone = store.load(stale.job_id)
    assert redone.state == "done" and redone.restarts == 1 and redone.model_version == "4"
    assert store.load(job.job_id).state == "done"

    # one that was running at each of MAX_RESTARTS crashes already (it may be what kills the service) ends failed
    doomed = store.create(frame, horizon=2)
    doomed.state, doomed.restarts = "running", MAX_RESTARTS
    store.save(doomed)
    last = BatchRunner(JobStore(tmp_path), lambda: ("m", "4", _fake_forecast), BatchLimits(chunk_skus=5))
    last.start()
    last.stop()
    failed = store.load(doomed.job_id)
    assert failed.state == "failed" and f"{MAX_RESTARTS + 1} service restarts" in failed.error


def test_failed_job_reports_the_error(tmp_path):
    store = JobStore(tmp_path)

    def broken(h, horizon):
        raise ValueError("model exploded")

    runner = BatchRunner(store, lambda: ("m", "1", broken))
    runner.start()
    job = store.create(parse_csv(GOOD), horizon=2)
    runner.submit(job)
    _wait(store, job.job_id)
    runner.stop()
    assert store.load(job.job_id).state == "failed" and "model exploded" in store.load(job.job_id).error


def test_render_formats_and_bad_ids(tmp_path):
    store = JobStore(tmp_path)
    job = store.create(parse_csv(GOOD), horizon=2)
    path = store.result_path(job.job_id)
    from serving.bentos.batch import result_frame

    result_frame(_fake_forecast(parse_csv(GOOD), 2), "7").to_csv(path, index=False)
    csv_bytes, media = render(job, path, "csv")
    assert media.startswith("text/csv") and csv_bytes.count(b"\n") == 5
    body = json.loads(render(job, path, "json")[0])
    assert len(body["rows"]) == 4 and body["rows"][0]["sku"] == "A" and body["rows"][0]["model_version"] == "7"
    assert xlsx_available()  # openpyxl is a pinned dependency
    xlsx, media = render(job, path, "xlsx")
    assert xlsx[:2] == b"PK" and media == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert_xlsx_matches_csv(xlsx, csv_bytes)
    assert path.with_suffix(".xlsx").read_bytes() == xlsx  # kept next to the CSV: built once per job
    assert render(job, path, "xlsx")[0] == xlsx
    with pytest.raises(FormatUnavailable, match="unknown format"):
        render(job, path, "pdf")
    assert store.load("../etc") is None and store.load("0" * 32) is None
