"""Ingest: read the source through its hook, validate, quarantine, aggregate to weekly demand and inventory.

The weekly demand and inventory are run artifacts (``demand.parquet``, ``inventory.parquet``)
and output tables (``stock_weekly_demand``, ``stock_weekly_inventory``) in the source database,
replaced per output key like the others: the service reads the latest ones from there to answer
a caller that sends only a SKU.

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
from training.data.inventory import to_weekly_inventory
from training.data.source import DataFrameHook, SourceQueries, read_price_promotions, read_source
from training.data.validate import validate, validate_price_promotions
from training.data.weekly import last_complete_week_start, to_weekly_demand, to_weekly_regressors

log = logging.getLogger("stockml.pipeline")


def ingest(run: Run, cutoff: str | None = None) -> dict:
    """Read the source through its hook, validate, quarantine, aggregate to weekly demand."""
    s = run.settings
    layout = run.layout
    queries = SourceQueries.default(s.source_schema, s.products_query, s.movements_query, s.price_promotions_query)
    hook = run.hook()
    products, movements = read_source(hook, queries)
    cutoff = cutoff or s.cutoff
    today = pd.Timestamp(cutoff) if cutoff else pd.Timestamp.now()
    result = validate(products, movements, today=today)
    orders = related.read_orders(run, set(result.products["sku"]), today)  # None: no order_lines (normal)
    prices, price_quarantine = ingest_price_promotions(hook, queries, set(result.products["sku"]), layout)
    quarantine = _whole_quarantine(result, orders, price_quarantine)
    quarantine.to_csv(layout.quarantine, index=False)
    demand = to_weekly_demand(result.movements, pd.Timestamp(cutoff) if cutoff else None)
    demand.to_parquet(layout.demand, index=False)
    inventory = to_weekly_inventory(result.movements, demand)
    inventory.to_parquet(layout.inventory, index=False)
    result.products.to_parquet(layout.products, index=False)
    report = {
        **result.report,
        **prices,
        "quarantined": len(quarantine),  # every table's
        "skus": int(demand["unique_id"].nunique()),
        "weeks": int(demand["ds"].nunique()),
        "demand_rows": len(demand),
        "first_week": str(demand["ds"].min().date()),
        "last_week": str(demand["ds"].max().date()),
        "cutoff_week": str(last_complete_week_start(pd.Timestamp(cutoff)).date()) if cutoff else None,
        "inventory": inventory_summary(inventory),
    }
    rules, report["related"] = related.mine(run, orders)
    run.save_json(layout.ingest_report, report)
    # After the report: the quarantine is keyed by the data cut-off it records (last_week).
    run.write("stock_quarantine", quarantine)
    related.write_related(run, rules)
    publish_weekly(run, demand, inventory)
    publish_demand(s, run.run_id, layout.root)
    log.info("ingest done", extra={"run_id": run.run_id, **{k: report[k] for k in ("skus", "quarantined")}})
    return report


def inventory_summary(inventory: pd.DataFrame) -> dict:
    """The ingest report's ``inventory`` entry: how much stock information the source had."""
    return {
        "rows": len(inventory),
        "censored_weeks": int(inventory["censored"].sum()),
        "weeks_without_stock_count": int(inventory["on_hand"].isna().sum()),
    }


def publish_weekly(run: Run, demand: pd.DataFrame, inventory: pd.DataFrame) -> dict[str, int]:
    """Replace this run's output key in ``stock_weekly_demand`` and ``stock_weekly_inventory``."""
    return {
        "stock_weekly_demand": run.write("stock_weekly_demand", demand.rename(columns={"unique_id": "sku"})),
        "stock_weekly_inventory": run.write("stock_weekly_inventory", inventory.rename(columns={"unique_id": "sku"})),
    }


def _whole_quarantine(result, orders, price_quarantine: pd.DataFrame) -> pd.DataFrame:
    """The quarantine of the whole source: products and movements, then the optional tables'
    (order lines, price_promotions), all counted in the report."""
    extra = [q for q in (None if orders is None else orders.quarantine, price_quarantine) if q is not None and len(q)]
    if not extra:
        return result.quarantine
    quarantine = pd.concat([result.quarantine, *extra], ignore_index=True)
    optional = {"order_lines", "price_promotions"}
    result.report["quarantined"] = len(quarantine)
    result.report["quarantined_by_reason"] = {
        f"{t}: {r}" if t in optional else str(r): int(n)
        for (t, r), n in quarantine.groupby(["source_table", "reason"], sort=False).size().items()
    }
    return quarantine


def ingest_price_promotions(
    hook: DataFrameHook, queries: SourceQueries, known_skus: set[str], layout: RunLayout
) -> tuple[dict, pd.DataFrame]:
    """The optional price_promotions table: validated, quarantined, written as weekly regressors.

    Returns (report entries, quarantined rows). Absent is normal: the report says so and no
    ``weekly_regressors.parquet`` is written (a stale one from an earlier ingest into the same
    run folder is removed).
    """
    layout.weekly_regressors.unlink(missing_ok=True)
    raw = read_price_promotions(hook, queries)
    if raw is None:
        log.info("no price_promotions table in the source: forecasting without regressors")
        return {"price_promotions": "absent"}, pd.DataFrame()
    good, quarantined, report = validate_price_promotions(raw, known_skus)
    regressors = to_weekly_regressors(good)
    regressors.to_parquet(layout.weekly_regressors, index=False)
    return {
        "price_promotions": "present",
        **report,
        "regressor_weeks": int(regressors["ds"].nunique()),
        "regressors_last_week": str(regressors["ds"].max().date()) if len(regressors) else None,
    }, quarantined


def load_regressors(run: Run) -> pd.DataFrame | None:
    """The run's weekly regressors (``unique_id, ds, unit_price, on_promotion``), or None without any."""
    path = run.layout.weekly_regressors
    return pd.read_parquet(path) if path.exists() else None


def load_inventory(run: Run) -> pd.DataFrame:
    """The run's weekly inventory (``unique_id, ds, on_hand, receipts, censored``, on the demand's weeks).

    Raises ``FileNotFoundError`` for a run whose ingest predates the inventory contract (re-run the ingest).
    """
    path = run.layout.inventory
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: re-run the ingest (stock_ingest or `stockml validate`)")
    return pd.read_parquet(path)


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
        # Optional: the weekly regressors travel with the demand when the source had them, and the
        # weekly inventory when the ingest made one (snapshots published before it have none).
        for optional in ("weekly_regressors", "inventory"):
            src, dst = getattr(published, optional), getattr(layout, optional)
            dst.unlink(missing_ok=True)
            if src.exists():
                shutil.copy2(src, dst)
    return run.load_json(layout.ingest_report)
