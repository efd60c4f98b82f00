"""Batch forecasting jobs: a CSV of histories in, a forecasts file out, run in the background.

``POST /batch`` (multipart, field ``file``: a CSV with columns ``sku, ds, y``; optional form
field ``horizon``) validates the whole file first (any problem is a 422 naming it), stores it
under ``$STOCKML_HOME/serving_jobs/<job_id>/`` and queues the job. One worker thread per
service process forecasts the queued jobs in order, ``chunk_skus`` SKUs at a time, with the
champion that was loaded when the job started (one model version per job), appending each
chunk to ``result.csv`` and updating ``job.json`` (state, SKUs done / total) atomically.

A restart does not lose anything: finished jobs are read back from disk, and jobs that were
queued or running are queued again (a running one restarts from its first chunk).

Limits (environment): ``STOCKML_SERVING_BATCH_MAX_BYTES`` (upload size, 64 MiB),
``STOCKML_SERVING_BATCH_MAX_SKUS`` (100000), ``STOCKML_SERVING_BATCH_CHUNK`` (SKUs per chunk, 250).
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

from serving.bentos.schemas import MAX_DATE, MAX_HORIZON, MAX_WEEKS, MAX_Y, MIN_DATE

log = logging.getLogger("stockml.serving")

RESULT_COLUMNS = [
    "sku", "ds", "step", "yhat", "lo80", "hi80", "lo95", "hi95", "method", "pattern", "confidence", "model_version",
]  # fmt: skip
STATES = ("queued", "running", "done", "failed")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(float(raw)) if raw else default


@dataclass(frozen=True)
class BatchLimits:
    max_bytes: int = 64 * 1024 * 1024
    max_skus: int = 100_000
    chunk_skus: int = 250

    @classmethod
    def from_env(cls) -> BatchLimits:
        return cls(
            max_bytes=_env_int("STOCKML_SERVING_BATCH_MAX_BYTES", cls.max_bytes),
            max_skus=_env_int("STOCKML_SERVING_BATCH_MAX_SKUS", cls.max_skus),
            chunk_skus=max(1, _env_int("STOCKML_SERVING_BATCH_CHUNK", cls.chunk_skus)),
        )


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

    def create(self, frame: pd.DataFrame, horizon: int, submitted_by: str | None = None) -> Job:
        job = Job(
            job_id=uuid.uuid4().hex,
            state="queued",
            horizon=horizon,
            skus_total=int(frame["unique_id"].nunique()),
            rows=len(frame),
            created_at=_now(),
            submitted_by=submitted_by,
        )
        d = self.dir(job.job_id)
        d.mkdir()
        frame.to_parquet(d / "input.parquet", index=False)
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
    """One background thread working through the queued jobs, chunk by chunk."""

    def __init__(self, store: JobStore, champion: ChampionGetter, limits: BatchLimits | None = None) -> None:
        self.store = store
        self.champion = champion
        self.limits = limits or BatchLimits.from_env()
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="stockml-batch", daemon=True)

    def start(self) -> None:
        for job in self.store.all():  # jobs interrupted by a restart are queued again
            if job.state in ("queued", "running"):
                if job.state == "running":
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
    "UploadMiddleware",
    "parse_csv",
    "render",
]


# ---------------------------------------------------------------- the upload's envelope, before BentoML sees it


class UploadMiddleware:
    """Checks a multipart upload to ``paths`` before BentoML parses it, answering 415/422 with the reason.

    :class:`~serving.bentos.middleware.RequestValidationMiddleware` only handles the JSON routes in its
    ``schemas`` and lets other routes through untouched, and BentoML answers a malformed form (no
    ``file`` part, ``horizon`` not a number, a non-multipart body) with a 400 and a traceback in the
    log. Here: larger than ``max_bytes`` (Content-Length or bytes received) → 422; not
    ``multipart/form-data`` → 415; no ``file`` part, an unknown field, or ``horizon`` not an integer
    1..104 → 422 naming the field. A valid body is replayed unchanged; the CSV's content is checked
    by the endpoint (:func:`parse_csv`).
    """

    def __init__(self, app: Any, paths: tuple[str, ...] = ("/batch",), max_bytes: int | None = None) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_bytes = BatchLimits.from_env().max_bytes if max_bytes is None else max_bytes

    @staticmethod
    async def _answer(scope: Any, receive: Any, send: Any, status: int, msg: str, field: str | None) -> None:
        from starlette.responses import JSONResponse

        from serving.bentos.schemas import error_body

        await JSONResponse(error_body(msg, field=field), status_code=status)(scope, receive, send)

    async def _drain(self, receive: Any) -> None:
        from serving.bentos.middleware import drain_body

        await drain_body(receive, 2 * self.max_bytes)  # read (and drop) the body: the client gets the answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        too_large = f"upload larger than {self.max_bytes} bytes"
        length = headers.get(b"content-length", "")
        if length.strip().isdigit() and int(length) > self.max_bytes:
            await self._drain(receive)
            await self._answer(scope, receive, send, 422, too_large, "file")
            return
        ctype = headers.get(b"content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            await self._drain(receive)
            msg = f"content type {ctype or 'none'!r}: send multipart/form-data with the CSV in the field 'file'"
            await self._answer(scope, receive, send, 415, msg, None)
            return
        from serving.bentos.middleware import BodyTooLarge, read_body, replay_body

        try:
            body = await read_body(receive, self.max_bytes, drain_limit=2 * self.max_bytes)
        except BodyTooLarge:
            await self._answer(scope, receive, send, 422, too_large, "file")
            return
        if body is None:  # the client went away
            return
        problem = await self._check_form(scope, replay_body(body, receive))
        if problem is not None:
            await self._answer(scope, receive, send, 422, *problem)
            return
        await self.app(scope, replay_body(body, receive), send)

    @staticmethod
    async def _check_form(scope: Any, receive: Any) -> tuple[str, str] | None:
        from starlette.datastructures import UploadFile
        from starlette.requests import Request

        try:
            form = await Request(scope, receive).form()
        except Exception as exc:  # a broken multipart body (bad boundary, truncated)
            return f"the multipart body cannot be read: {str(exc)[:200] or type(exc).__name__}", "body"
        try:
            unknown = sorted(set(form.keys()) - {"file", "horizon"})
            if unknown:
                return f"unknown form field(s) {unknown}; send 'file' and optionally 'horizon'", unknown[0]
            files = form.getlist("file")
            if len(files) != 1 or not isinstance(files[0], UploadFile):
                return "send exactly one CSV file in the form field 'file'", "file"
            horizon = form.get("horizon")
            if horizon is not None:
                text = horizon if isinstance(horizon, str) else ""
                if not (text.strip().isdigit() and 1 <= int(text) <= MAX_HORIZON):
                    return f"horizon must be an integer between 1 and {MAX_HORIZON}", "horizon"
            return None
        finally:
            await form.close()
