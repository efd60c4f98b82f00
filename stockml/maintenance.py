"""Housekeeping and health checks the daily DAGs run (and the CLI can run by hand).

- :func:`publish_demand` and :func:`publish_forecasts` move the home folder's *latest*
  pointers (:class:`stockml.layout.HomeLayout`) to a run;
- :func:`prune_runs` deletes run folders past their retention, never the ones the latest
  pointers (demand, forecasts) refer to;
- :func:`forecast_performance` finds the forecasts in service and the demand observed since
  and has :func:`monitoring.forecast_quality.forecast_performance` score them, so monitoring can
  ask for a retraining when they degrade.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd

from monitoring.forecast_quality import forecast_performance as score_forecasts
from stockml.layout import read_pointer, write_pointer
from stockml.settings import Settings


def publish_demand(s: Settings, run_id: str, run_dir: Path) -> Path:
    """Point ``latest_demand`` at a run's weekly demand (what training picks up)."""
    return write_pointer(s.layout.latest_demand, run_id, run_dir)


def publish_forecasts(s: Settings, run_id: str, run_dir: Path) -> Path:
    """Point ``latest_forecasts`` at a run's forecasts (what is in service)."""
    return write_pointer(s.layout.latest_forecasts, run_id, run_dir)


def _pinned(s: Settings) -> set[Path]:
    return {run.root.resolve() for run in map(read_pointer, s.layout.pointers) if run is not None}


def prune_runs(s: Settings, older_than_days: int, dry_run: bool = False) -> list[str]:
    """Remove run folders not modified for ``older_than_days``; returns the names removed."""
    runs = s.layout.runs
    if not runs.exists():
        return []
    limit = time.time() - older_than_days * 86400
    pinned = _pinned(s)
    removed = []
    for d in sorted(runs.iterdir()):
        if d.is_dir() and d.resolve() not in pinned and d.stat().st_mtime < limit:
            removed.append(d.name)
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
    return removed


def forecast_performance(s: Settings, threshold: float) -> dict:
    """MASE of the forecasts in service on the weeks observed since (lag-1 in-sample scale).

    ``degraded`` is true when that MASE exceeds ``threshold``; with no overlap yet (forecasts
    newer than the data) nothing can be judged and ``degraded`` is false.
    """
    demand_run = read_pointer(s.layout.latest_demand)
    forecast_run = read_pointer(s.layout.latest_forecasts)
    if demand_run is None or forecast_run is None:
        return {"status": "no forecasts or demand published yet", "degraded": False}
    demand = pd.read_parquet(demand_run.demand)
    forecasts = pd.read_parquet(forecast_run.forecasts)
    return score_forecasts(forecasts, demand, threshold)
