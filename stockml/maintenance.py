"""Housekeeping and health checks the daily DAGs run (and the CLI can run by hand).

- :func:`prune_runs` deletes run folders past their retention, never the ones the latest
  pointers (demand, forecasts) refer to;
- :func:`forecast_performance` scores the forecasts in service against the demand that has
  since been observed, so monitoring can ask for a retraining when they degrade.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stockml.settings import Settings
from training.forecasting.metrics import mean_mase

POINTERS = ("latest_demand.json", "latest_forecasts.json")


def _pinned(s: Settings) -> set[Path]:
    pinned = set()
    for name in POINTERS:
        p = s.home / name
        if p.exists():
            pinned.add(Path(json.loads(p.read_text())["dir"]).resolve())
    return pinned


def prune_runs(s: Settings, older_than_days: int, dry_run: bool = False) -> list[str]:
    """Remove run folders not modified for ``older_than_days``; returns the names removed."""
    if not s.runs_dir.exists():
        return []
    limit = time.time() - older_than_days * 86400
    pinned = _pinned(s)
    removed = []
    for d in sorted(s.runs_dir.iterdir()):
        if d.is_dir() and d.resolve() not in pinned and d.stat().st_mtime < limit:
            removed.append(d.name)
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
    return removed


def publish_forecasts(s: Settings, run_dir: Path, run_id: str) -> None:
    (s.home / "latest_forecasts.json").write_text(json.dumps({"run_id": run_id, "dir": str(run_dir.resolve())}))


def forecast_performance(s: Settings, threshold: float) -> dict:
    """MASE of the forecasts in service on the weeks observed since (lag-1 in-sample scale).

    ``degraded`` is true when that MASE exceeds ``threshold``; with no overlap yet (forecasts
    newer than the data) nothing can be judged and ``degraded`` is false.
    """
    pointers = {n: s.home / n for n in POINTERS}
    if not all(p.exists() for p in pointers.values()):
        return {"status": "no forecasts or demand published yet", "degraded": False}
    demand = pd.read_parquet(Path(json.loads(pointers["latest_demand.json"].read_text())["dir"]) / "demand.parquet")
    fc_dir = Path(json.loads(pointers["latest_forecasts.json"].read_text())["dir"])
    fc = pd.read_parquet(fc_dir / "forecasts.parquet").rename(columns={"sku": "unique_id"})
    fc["ds"] = pd.to_datetime(fc["ds"])
    joined = fc.merge(demand, on=["unique_id", "ds"], how="inner")
    if joined.empty:
        return {"status": "no observed weeks inside the forecast horizon yet", "degraded": False, "weeks": 0}
    start = fc["ds"].min()
    mase = mean_mase(joined, demand[demand["ds"] < start])
    return {
        "status": "scored",
        "weeks": int(joined["ds"].nunique()),
        "skus": int(joined["unique_id"].nunique()),
        "mase": mase,
        "threshold": threshold,
        "degraded": bool(np.isfinite(mase) and mase > threshold),
        "model_version": str(fc["model_version"].iloc[0]) if "model_version" in fc else None,
    }
