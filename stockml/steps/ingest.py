"""Ingest: read the source through its hook, validate, quarantine, aggregate to weekly demand.

Also the hand-over to training: an ingest publishes its weekly demand (the ``latest_demand``
pointer) and a training run adopts a published snapshot instead of re-reading the source.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from stockml.layout import RunLayout, read_pointer
from stockml.maintenance import publish_demand
from stockml.run import Run
from stockml.steps import related
from training.data.source import SourceQueries, read_source
from training.data.validate import validate
from training.data.weekly import last_complete_week_start, to_weekly_demand

log = logging.getLogger("stockml.pipeline")


def ingest(run: Run, cutoff: str | None = None) -> dict:
    """Read the source through its hook, validate, quarantine, aggregate to weekly demand."""
    s = run.settings
    layout = run.layout
    queries = SourceQueries.default(s.source_schema, s.products_query, s.movements_query)
    products, movements = read_source(run.hook(), queries)
    cutoff = cutoff or s.cutoff
    today = pd.Timestamp(cutoff) if cutoff else pd.Timestamp.now()
    result = validate(products, movements, today=today)
    orders = related.read_orders(run, set(result.products["sku"]), today)  # None: no order_lines (normal)
    quarantine = _with_order_lines(result, orders)
    quarantine.to_csv(layout.quarantine, index=False)
    demand = to_weekly_demand(result.movements, pd.Timestamp(cutoff) if cutoff else None)
    demand.to_parquet(layout.demand, index=False)
    result.products.to_parquet(layout.products, index=False)
    report = {
        **result.report,
        "skus": int(demand["unique_id"].nunique()),
        "weeks": int(demand["ds"].nunique()),
        "demand_rows": len(demand),
        "first_week": str(demand["ds"].min().date()),
        "last_week": str(demand["ds"].max().date()),
        "cutoff_week": str(last_complete_week_start(pd.Timestamp(cutoff)).date()) if cutoff else None,
    }
    rules, report["related"] = related.mine(run, orders)
    run.save_json(layout.ingest_report, report)
    # After the report: the quarantine is keyed by the data cut-off it records (last_week).
    run.write("stock_quarantine", quarantine)
    related.write_related(run, rules)
    publish_demand(s, run.run_id, layout.root)
    log.info("ingest done", extra={"run_id": run.run_id, **{k: report[k] for k in ("skus", "quarantined")}})
    return report


def _with_order_lines(result, orders) -> pd.DataFrame:
    """The quarantine of the whole source: products and movements, then order lines (counted in the report)."""
    if orders is None or orders.quarantine.empty:
        return result.quarantine
    quarantine = pd.concat([result.quarantine, orders.quarantine], ignore_index=True)
    result.report["quarantined"] = len(quarantine)
    result.report["quarantined_by_reason"] = {
        f"{t}: {r}" if t == "order_lines" else str(r): int(n)
        for (t, r), n in quarantine.groupby(["source_table", "reason"], sort=False).size().items()
    }
    return quarantine


def load_demand(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(weekly demand, products) of the run."""
    return pd.read_parquet(run.layout.demand), pd.read_parquet(run.layout.products)


def adopt_demand(run: Run, source_dir: str | Path | None = None) -> dict:
    """Copy a published weekly demand into this run (the latest one by default).

    Training runs separately from ingestion (another DAG, another worker): it starts from a
    validated snapshot rather than re-reading the source, so the data a model was trained on
    is exactly the data the ingest run validated.
    """
    if source_dir is None:
        pointer = run.settings.layout.latest_demand
        published = read_pointer(pointer)
        if published is None:
            raise FileNotFoundError(
                f"no published weekly demand ({pointer} is missing): "
                "run the stock_ingest DAG or `stockml validate` first"
            )
    else:
        published = RunLayout(Path(source_dir))
    missing = [f.name for f in published.demand_files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{published.root} lacks {missing}; re-run the ingest")
    layout = run.layout
    if published.root.resolve() != layout.root.resolve():
        for src, dst in zip(published.demand_files, layout.demand_files, strict=True):
            shutil.copy2(src, dst)
    return run.load_json(layout.ingest_report)
