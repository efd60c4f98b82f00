"""Batch forecasting jobs: a CSV of histories in, a forecasts file out, run in the background.

``POST /batch`` (multipart, field ``file``: a CSV with columns ``sku, ds, y``; optional form
field ``horizon``) validates the whole file first (any problem is a 422 naming it), stores it
under ``$STOCKML_HOME/serving_jobs/<job_id>/`` and queues the job. One worker thread per
service process forecasts the queued jobs in order, ``chunk_skus`` SKUs at a time, with the
champion that was loaded when the job started (one model version per job), appending each
chunk to ``result.csv`` and updating ``job.json`` (state, SKUs done / total) atomically.

A restart does not lose anything: finished jobs are read back from disk, and jobs that were
queued or running are queued again (a running one restarts from its first chunk).

Limits: the ``batch`` section of :class:`stockml.settings.Settings`: ``STOCKML_BATCH__MAX_BYTES``
(upload size, 64 MiB), ``STOCKML_BATCH__MAX_SKUS`` (100000), ``STOCKML_BATCH__CHUNK_SKUS`` (SKUs per
chunk, 250). The upload's envelope (size, content type, form fields) is checked before it is parsed
by :class:`serving.bentos.middleware.UploadMiddleware`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.bentos.schemas import MAX_DATE, MAX_WEEKS, MAX_Y, MIN_DATE
from stockml.settings_serving import BatchSettings

log = logging.getLogger("stockml.serving")

RESULT_COLUMNS = [
    "sku", "ds", "step", "yhat", "lo80", "hi80", "lo95", "hi95", "method", "pattern", "confidence", "model_version",
]  # fmt: skip
STATES = ("queued", "running", "done", "failed")
MAX_RESTARTS = 3  # a job running when the service died is resumed this many times, then fails with the reason


@dataclass(frozen=True)
class BatchLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_skus: int = 100_000
    chunk_skus: int = 250

    @classmethod
    def from_settings(cls, batch: BatchSettings) -> BatchLimits:
        return cls(max_bytes=batch.max_bytes, max_skus=batch.max_skus, chunk_skus=batch.chunk_skus)


class CsvError(ValueError):
    """The uploaded CSV cannot be used; the message says why (answered as 422)."""


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """Data-row numbers (1 = first line after the header) of the first offending rows."""
    idx = np.flatnonzero(mask.to_numpy())[:limit] + 1
    more = "" if int(mask.sum()) <= limit else f" and {int(mask.sum()) - limit} more"
    return f"row(s) {', '.join(str(i) for i in idx)}{more}"


def parse_csv(raw: bytes, limits: BatchLimits | None = None) -> pd.DataFrame:
    """Validate an uploaded CSV and return ``unique_id, ds, y`` (ds as datetime64, y float)."""
    limits = limits or BatchLimits()
    if len(raw) > limits.max_bytes:
        raise CsvError(f"file is {len(raw)} bytes; at most {limits.max_bytes} are accepted")
    if not raw.strip():
        raise CsvError("file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(f"file is not UTF-8 text (byte {exc.start})") from None
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        raise CsvError(f"file is not a readable CSV: {str(exc).strip()[:200]}") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ("sku", "ds", "y") if c not in df.columns]
    if missing:
        raise CsvError(f"missing column(s) {missing}; the header must name sku, ds, y (found {list(df.columns)[:10]})")
    if df.columns.duplicated().any():
        raise CsvError(f"duplicated column(s) {sorted(set(df.columns[df.columns.duplicated()]))}")
    if df.empty:
        raise CsvError("file has a header but no rows")
    sku = df["sku"].str.strip()
    bad = (sku == "") | (sku.str.len() > 200)
    if bad.any():
        raise CsvError(f"sku must be 1..200 characters: {_rows(bad)}")
    y = pd.to_numeric(df["y"].str.strip(), errors="coerce")
    bad = y.isna() | ~np.isfinite(y.fillna(0))
    if bad.any():
        raise CsvError(f"y is not a finite number: {_rows(bad)}")
    bad = y < 0
    if bad.any():
        raise CsvError(f"y is negative (demand must be >= 0): {_rows(bad)}")
    bad = y > MAX_Y
    if bad.any():
        raise CsvError(f"y is larger than {MAX_Y:g}: {_rows(bad)}")
    ds = pd.to_datetime(df["ds"].str.strip(), format="%Y-%m-%d", errors="coerce")
    bad = ds.isna() | (ds < pd.Timestamp(MIN_DATE)) | (ds > pd.Timestamp(MAX_DATE))
    if bad.any():
        raise CsvError(f"ds is not a date YYYY-MM-DD between {MIN_DATE} and {MAX_DATE}: {_rows(bad)}")
    out = pd.DataFrame({"unique_id": sku.to_numpy(), "ds": ds.to_numpy(), "y": y.to_numpy(dtype=float)})
    weeks = out["ds"].dt.to_period("W-SUN").dt.start_time
    per = pd.DataFrame({"sku": out["unique_id"], "w": weeks}).groupby("sku")["w"].agg(["nunique", "min", "max"])
    if len(per) > limits.max_skus:
        raise CsvError(f"file has {len(per)} SKUs; at most {limits.max_skus} are accepted per job")
    short = per.index[per["nunique"] < 2]
    if len(short):
        raise CsvError(f"SKU(s) {list(short[:5])} cover fewer than 2 different weeks ({len(short)} in all)")
    span = (per["max"] - per["min"]).dt.days // 7 + 1
    long = span.index[span > MAX_WEEKS]
    if len(long):
        raise CsvError(f"SKU(s) {list(long[:5])} span more than {MAX_WEEKS} weeks")
    return out


# ---------------------------------------------------------------- jobs on disk


@dataclass
class Job:
    job_id: str
    state: str
    horizon: int
    skus_total: int
    rows: int
    skus_done: int = 0
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    error: str | None = None
    submitted_by: str | None = None
    restarts: int = 0
    callback_url: str | None = None
    notify_email: str | None = None
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)  # per channel (serving.bentos.callbacks)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        return round(self.skus_done / self.skus_total, 4) if self.skus_total else 0.0

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out["progress"] = self.progress
        out["seconds"] = self.extra.get("seconds")  # forecasting wall time of a finished job
        return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class JobStore:
    """``root/<job_id>/{job.json, input.csv, result.csv}``; ``job.json`` is replaced atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def dir(self, job_id: str) -> Path:
        if not (len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)):
            raise KeyError(job_id)
        return self.root / job_id

    def create(self, frame: pd.DataFrame, horizon: int, submitted_by: str | None = None, **notify: str | None) -> Job:
        """A queued job for ``frame``; ``notify``: its ``callback_url`` and ``notify_email``, if any."""
        job = Job(
            job_id=uuid.uuid4().hex,
            state="queued",
            horizon=horizon,
            skus_total=int(frame["unique_id"].nunique()),
            rows=len(frame),
            created_at=_now(),
            submitted_by=submitted_by,
            **notify,
        )
        d = self.dir(job.job_id)
        d.mkdir()
        frame.to_parquet(d / "input.parquet", index=False)
        self.save(job)
        return job

    def create_failed(self, reason: str, horizon: int, submitted_by: str | None = None, **notify: str | None) -> Job:
        """A job whose upload could not be used: ``failed`` at once with ``reason`` (nothing to run)."""
        now = _now()
        job = Job(
            job_id=uuid.uuid4().hex,
            state="failed",
            horizon=horizon,
            skus_total=0,
            rows=0,
            created_at=now,
            finished_at=now,
            error=reason[:500],
            submitted_by=submitted_by,
            **notify,
        )
        self.dir(job.job_id).mkdir()
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        d = self.dir(job.job_id)
        tmp = d / f"job.json.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(asdict(job), indent=1))
        with self._lock:
            os.replace(tmp, d / "job.json")

    def load(self, job_id: str) -> Job | None:
        try:
            path = self.dir(job_id) / "job.json"
        except KeyError:
            return None
        try:
            return Job(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def input(self, job_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.dir(job_id) / "input.parquet")

    def result_path(self, job_id: str) -> Path:
        return self.dir(job_id) / "result.csv"

    def all(self) -> list[Job]:
        jobs = [self.load(p.name) for p in self.root.iterdir() if p.is_dir()]
        return sorted((j for j in jobs if j is not None), key=lambda j: j.created_at)


# ---------------------------------------------------------------- the worker

# (history chunk as unique_id/ds/y, horizon) -> router output frame; the callable is bound to one model
Forecaster = Callable[[pd.DataFrame, int], pd.DataFrame]
# () -> (model name, version, forecaster) of the current champion, or None when none is loaded
ChampionGetter = Callable[[], tuple[str, str, Forecaster] | None]


def result_frame(fc: pd.DataFrame, version: str) -> pd.DataFrame:
    out = fc.rename(columns={"unique_id": "sku"}).copy()
    out["ds"] = pd.to_datetime(out["ds"]).dt.strftime("%Y-%m-%d")
    out["model_version"] = version
    return out[RESULT_COLUMNS]


class BatchRunner:
    """One background thread working through the queued jobs, chunk by chunk; ``on_finish`` is told of
    each job that ends (done or failed), after its final state is on disk."""

    def __init__(
        self,
        store: JobStore,
        champion: ChampionGetter,
        limits: BatchLimits | None = None,
        on_finish: Callable[[Job], None] | None = None,
    ) -> None:
        self.store = store
        self.champion = champion
        self.limits = limits or BatchLimits()
        self.on_finish = on_finish
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="stockml-batch", daemon=True)

    def start(self) -> None:
        for job in self.store.all():  # jobs interrupted by a restart are queued again
            if job.state in ("queued", "running"):
                if job.state == "running":
                    if job.restarts + 1 > MAX_RESTARTS:  # it keeps taking the service down with it: give up
                        job.state, job.finished_at = "failed", _now()
                        job.error = f"interrupted by {job.restarts + 1} service restarts while running; not retried"
                        self.store.save(job)
                        log.error("batch job %s failed: %s", job.job_id, job.error)
                        self._finished(job)
                        continue
                    job.state, job.skus_done, job.restarts = "queued", 0, job.restarts + 1
                    self.store.save(job)
                self.queue.put(job.job_id)
                log.info("batch job %s queued again after a restart", job.job_id)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.put(None)

    def submit(self, job: Job) -> None:
        self.queue.put(job.job_id)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            job_id = self.queue.get()
            if job_id is None:
                return
            job = self.store.load(job_id)
            if job is None or job.state not in ("queued", "running"):
                continue
            try:
                self.run(job)
            except Exception as exc:
                log.exception("batch job %s failed", job_id)
                job.state, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:500], _now()
                self.store.save(job)
            if job.state in ("done", "failed"):
                self._finished(job)

    def _finished(self, job: Job) -> None:
        if self.on_finish is not None:
            try:
                self.on_finish(job)
            except Exception:  # a notification problem never touches the job's result
                log.exception("batch job %s: on_finish failed", job.job_id)

    def run(self, job: Job) -> None:
        champ = self.champion()
        while champ is None and not self.stop_event.is_set():  # no champion yet: wait for one
            time.sleep(1.0)
            champ = self.champion()
        if champ is None:
            return
        name, version, forecast = champ
        frame = self.store.input(job.job_id)
        skus = list(pd.unique(frame["unique_id"]))
        job.state, job.started_at, job.model_name, job.model_version = "running", _now(), name, version
        job.skus_done, job.error = 0, None
        self.store.save(job)
        out = self.store.result_path(job.job_id)
        partial = out.with_suffix(".partial")
        groups = frame.groupby("unique_id", sort=False).indices
        t0 = time.perf_counter()
        with partial.open("w", newline="") as fh:
            fh.write(",".join(RESULT_COLUMNS) + "\n")
            for i in range(0, len(skus), self.limits.chunk_skus):
                if self.stop_event.is_set():
                    return  # left as "running": queued again at the next start
                chunk_skus = skus[i : i + self.limits.chunk_skus]
                idx = np.concatenate([groups[s] for s in chunk_skus])
                fc = forecast(frame.iloc[idx], job.horizon)
                result_frame(fc, version).to_csv(fh, header=False, index=False, lineterminator="\n")
                fh.flush()
                job.skus_done = min(len(skus), i + len(chunk_skus))
                self.store.save(job)
        os.replace(partial, out)
        job.state, job.finished_at = "done", _now()
        job.extra["seconds"] = round(time.perf_counter() - t0, 3)
        self.store.save(job)
        log.info(
            "batch job %s: %d SKUs forecast with v%s in %.1f s", job.job_id, len(skus), version, job.extra["seconds"]
        )


# ---------------------------------------------------------------- result formats


class FormatUnavailable(RuntimeError):
    pass


def xlsx_available() -> bool:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        return False
    return True


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "json", "xlsx")  # what /batch_result serves (its schema's Literal lists the same)


def to_xlsx(df: pd.DataFrame) -> bytes:
    """One sheet ``forecasts`` with the CSV's columns and rows: ``ds`` as real Excel dates (shown
    YYYY-MM-DD), numbers as numbers, empty cells where the CSV is empty, the header row frozen.

    openpyxl's write-only (streaming) mode: several times faster than ``DataFrame.to_excel`` for the
    100k+ rows of a large batch, in bounded memory."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("forecasts")
    ws.freeze_panes = "A2"
    for i, name in enumerate(df.columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = max(10, len(str(name)) + 2)
    ws.append([str(c) for c in df.columns])
    cols = []
    for name in df.columns:
        col = df[name]
        if name == "ds":
            values = [d.date() for d in pd.to_datetime(col, format="%Y-%m-%d")]  # a date: Excel shows yyyy-mm-dd
        else:
            values = col.astype(object).where(col.notna(), None).tolist()
        cols.append(values)
    for row in zip(*cols, strict=True):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def render(job: Job, path: Path, fmt: str) -> tuple[bytes, str]:
    """The result file in ``fmt`` (csv, json, xlsx) and its media type."""
    if fmt not in FORMATS:
        raise FormatUnavailable(f"unknown format {fmt!r}")
    if fmt == "csv":
        return path.read_bytes(), "text/csv; charset=utf-8"
    if fmt == "xlsx":
        if not xlsx_available():
            raise FormatUnavailable("xlsx not available: openpyxl is not installed in the service environment")
        cached = path.with_suffix(".xlsx")  # built at the first download, kept next to the CSV
        if cached.exists() and cached.stat().st_mtime >= path.stat().st_mtime:
            return cached.read_bytes(), XLSX_MEDIA_TYPE
    df = pd.read_csv(path, dtype={"sku": str, "model_version": str}, keep_default_na=False, na_values=[""])
    if fmt == "json":
        records = json.loads(df.to_json(orient="records", double_precision=15))
        body = {"job_id": job.job_id, "model_version": job.model_version, "horizon": job.horizon, "rows": records}
        return json.dumps(body).encode(), "application/json"
    content = to_xlsx(df)
    partial = cached.with_suffix(".xlsx.partial")
    partial.write_bytes(content)
    os.replace(partial, cached)  # two concurrent first downloads both build it; the last one wins, same bytes
    return content, XLSX_MEDIA_TYPE


__all__ = [
    "BatchLimits",
    "BatchRunner",
    "CsvError",
    "FormatUnavailable",
    "Job",
    "JobStore",
    "parse_csv",
    "render",
]
