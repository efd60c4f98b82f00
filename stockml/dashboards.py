"""The ops dashboards: the Evidently UI on the workspace, and its first drift report.

``stockml dashboards`` runs ``evidently ui`` on the configured workspace (in the foreground, or in
the background with a pid file for ``make dashboards-up``); ``stockml dashboards seed`` stores a
first drift report there, so a fresh ``make run`` shows a plotted point rather than an empty project.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from monitoring import workspace as ws
from stockml.layout import read_pointer
from stockml.settings import Settings

START_TIMEOUT_S = 90.0


def ui_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def ui_command(workspace: Path, host: str, port: int) -> list[str]:
    """``evidently ui`` from this interpreter's environment on ``workspace``."""
    exe = Path(sys.executable).with_name("evidently")
    return [str(exe), "ui", "--workspace", str(workspace), "--host", host, "--port", str(port)]


def ui_is_up(url: str) -> bool:
    """Whether an Evidently UI answers at ``url`` (its projects API, not only a TCP port)."""
    try:
        return httpx.get(f"{url}/api/projects", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port``."""
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class Background:
    """Where a background UI keeps its pid and its log."""

    pid_file: Path
    log_file: Path


def start_background(workspace: Path, host: str, port: int, files: Background) -> int:
    """Start the UI in its own session, wait until it answers, write its pid; the pid.

    Raises with the log's tail when it exits or does not answer within ``START_TIMEOUT_S``."""
    if port_taken(host, port):
        raise ValueError(f"port {port} on {host} is taken by another program: set STOCKML_DASHBOARDS_PORT")
    ws.ensure_project(workspace)  # the project and its panels exist before the first look
    files.log_file.parent.mkdir(parents=True, exist_ok=True)
    with files.log_file.open("a") as log:
        proc = subprocess.Popen(
            ui_command(workspace, host, port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = ui_url(host, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"evidently ui exited ({proc.returncode}); see {files.log_file}: {_tail(files.log_file)}"
            )
        if ui_is_up(url):
            files.pid_file.write_text(str(proc.pid))
            return proc.pid
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError(f"evidently ui did not answer at {url} within {START_TIMEOUT_S:.0f} s; see {files.log_file}")


def stop_background(pid_file: Path) -> bool:
    """Stop the UI whose pid ``pid_file`` holds (its whole session); whether one was running."""
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, n: int = 1500) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def _champion_window(s: Settings) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The champion router's training window (its ``data_start``/``data_end`` tags), or None."""
    from stockml.steps.registry import configure_mlflow
    from training.registry.mlflow_registry import version_by_alias
    from training.registry.names import ROUTER_MODEL

    configure_mlflow(s)
    version = version_by_alias(ROUTER_MODEL, "champion")
    if version is None or not version.tags.get("data_start") or not version.tags.get("data_end"):
        return None
    return pd.Timestamp(version.tags["data_start"]), pd.Timestamp(version.tags["data_end"])


@dataclass(frozen=True)
class SeedResult:
    snapshot_id: str
    timestamp: dt.datetime
    reference_weeks: tuple[str, str]
    current_weeks: tuple[str, str]
    drift_share: float


def seed_drift(s: Settings, timestamp: dt.datetime | None = None) -> SeedResult:
    """Store a drift report of the published demand's last ``horizon`` weeks against the champion's
    training window (the weeks before those, when no champion records its window).

    ``timestamp`` defaults to the last published week, so reseeding the same data replaces the point."""
    pointer = read_pointer(s.layout.latest_demand)
    if pointer is None:
        raise FileNotFoundError("no published demand yet: run `make pipeline`, the stock_ingest DAG or `stockml run`")
    demand = pd.read_parquet(pointer.demand)
    weeks = pd.DatetimeIndex(sorted(demand["ds"].unique()))
    current_from = weeks[-min(s.horizon, len(weeks) - 1)]
    window = _champion_window(s)
    start, end = window if window else (weeks[0], current_from - pd.Timedelta(days=1))
    reference = demand[(demand["ds"] >= start) & (demand["ds"] <= end) & (demand["ds"] < current_from)]
    current = demand[demand["ds"] >= current_from]
    snapshot = ws.demand_drift_snapshot(reference, current)
    when = timestamp or weeks[-1].to_pydatetime()
    snapshot_id = ws.add_drift_snapshot(s.workspace_dir, snapshot, when)
    share = next(
        m["value"]["share"]
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:DriftedColumnsCount"
    )
    return SeedResult(
        snapshot_id,
        when,
        (f"{reference['ds'].min():%Y-%m-%d}", f"{reference['ds'].max():%Y-%m-%d}"),
        (f"{current['ds'].min():%Y-%m-%d}", f"{current['ds'].max():%Y-%m-%d}"),
        float(share),
    )


# -- what a monitoring run hands to the dashboards ----------------------------------------------------


def quality_by_pattern(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """``pattern, mase, mae`` of the model version that was scored most (the one mostly in service)
    from per-(model version, pattern) quality rows (the monitoring step's ``by_pattern`` records)."""
    rows = pd.DataFrame(records)
    if rows.empty:
        return pd.DataFrame(columns=["pattern", "mase", "mae"])
    if "model_version" in rows and "points" in rows:
        main = rows.groupby("model_version")["points"].sum().idxmax()
        rows = rows[rows["model_version"] == main]
    return rows.dropna(subset=["pattern"])[["pattern", "mase", "mae"]]


def bandit_split(s: Settings, when: dt.datetime, days: int = 7) -> dict[str, int]:
    """Forecast requests per alias in the ``days`` before ``when`` (the service's outcome store)."""
    from stockml.steps.weekly_report import bandit_frames, serving_url

    traffic, _ = bandit_frames(serving_url(s), daily=True)
    if traffic.empty:
        return {}
    end = pd.Timestamp(when).tz_localize(None) if pd.Timestamp(when).tzinfo else pd.Timestamp(when)
    recent = traffic[(traffic["ds"] > end - pd.Timedelta(days=days)) & (traffic["ds"] <= end)]
    return {str(a): int(n) for a, n in recent.groupby("alias")["requests"].sum().items() if a in ws.ALIASES}


def publish_monitoring(
    s: Settings, when: dt.datetime, quality_records: list[dict] | pd.DataFrame, drift_snapshot=None
) -> dict[str, str]:
    """Store a monitoring run's snapshots in the workspace at ``when``: forecast error by pattern,
    the bandit's split over the last week and, when given, the Evidently data-drift snapshot.

    What was not available (no scored forecasts, no traffic) is skipped, not stored as zeros; the
    ids of what was stored, by kind."""
    stored = {}
    per_pattern = quality_by_pattern(quality_records)
    if not per_pattern.empty:
        stored[ws.KIND_QUALITY] = ws.add_quality_snapshot(s.workspace_dir, per_pattern, when)
    split = bandit_split(s, when)
    if sum(split.values()) > 0:
        stored[ws.KIND_BANDIT] = ws.add_bandit_snapshot(s.workspace_dir, split, when)
    if drift_snapshot is not None:
        stored[ws.KIND_DRIFT] = ws.add_drift_snapshot(s.workspace_dir, drift_snapshot, when)
    return stored
