"""What the platform has published about each SKU: the latest weekly demand and inventory and the products.

Read from the source database (``stock_weekly_demand`` and ``stock_weekly_inventory``, written by the
ingest step; the source's ``products`` table), never from a run folder, so a reader on another
machine than the pipeline (the service answering a caller that sends only a SKU) sees the same thing.
Each table is read at its latest output key (:func:`training.data.store.latest_output`); the demand's
key gives the ``as_of_week``: the last complete week the published demand covers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from training.data.output_schema import OutputKey
from training.data.source import PRODUCT_COLUMNS, SourceQueries, read_optional
from training.data.store import latest_output
from training.data.validate import validate_products

DEMAND_TABLE, INVENTORY_TABLE = "stock_weekly_demand", "stock_weekly_inventory"


@dataclass(frozen=True)
class SkuStock:
    """The published inventory of one SKU at its latest week."""

    week: dt.date
    on_hand: float | None  # None: the source never counted this SKU's stock
    censored: bool


@dataclass(frozen=True)
class SkuProduct:
    lead_time_weeks: int | None
    min_order_qty: float | None
    unit_cost: float | None
    unit_price: float | None = None


@dataclass(frozen=True)
class PublishedStock:
    """The latest published demand (per SKU: weeks and units), inventory and product data."""

    demand_key: OutputKey | None = None
    demand: dict[str, tuple[list[dt.date], list[float]]] = field(default_factory=dict)
    inventory_key: OutputKey | None = None
    stock: dict[str, SkuStock] = field(default_factory=dict)
    products: dict[str, SkuProduct] = field(default_factory=dict)

    @property
    def as_of_week(self) -> dt.date | None:
        """Monday of the last complete week of the published demand."""
        return dt.date.fromisoformat(self.demand_key.cutoff_week) if self.demand_key else None

    def describe(self) -> str:
        """One line for logs and answers: which tables, of which key."""
        if self.demand_key is None:
            return f"no published {DEMAND_TABLE}"
        return f"{DEMAND_TABLE} of {self.demand_key.pipeline}, cut-off week {self.demand_key.cutoff_week}"


def _number(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def demand_by_sku(rows: pd.DataFrame | None) -> dict[str, tuple[list[dt.date], list[float]]]:
    """{sku: (weeks, units)} oldest first, from ``stock_weekly_demand`` rows."""
    if rows is None or rows.empty:
        return {}
    rows = rows.assign(ds=pd.to_datetime(rows["ds"]).dt.date, sku=rows["sku"].astype(str)).sort_values(["sku", "ds"])
    return {str(sku): (g["ds"].tolist(), g["y"].astype(float).tolist()) for sku, g in rows.groupby("sku", sort=False)}


def stock_by_sku(rows: pd.DataFrame | None) -> dict[str, SkuStock]:
    """{sku: its latest week's on hand and censored flag}, from ``stock_weekly_inventory`` rows."""
    if rows is None or rows.empty:
        return {}
    last = rows.assign(ds=pd.to_datetime(rows["ds"])).sort_values(["sku", "ds"]).groupby("sku").tail(1)
    return {
        str(r.sku): SkuStock(r.ds.date(), _number(r.on_hand), bool(r.censored) if pd.notna(r.censored) else False)
        for r in last.itertuples(index=False)
    }


def products_by_sku(products: pd.DataFrame | None) -> dict[str, SkuProduct]:
    """{sku: lead time, MOQ, unit cost and price} of the validated ``products`` rows (invalid rows are left out)."""
    if products is None or products.empty:
        return {}
    valid, _ = validate_products(products)
    out = {}
    for r in valid.itertuples(index=False):
        lead = _number(r.lead_time_weeks)
        out[str(r.sku)] = SkuProduct(
            int(lead) if lead is not None else None,
            _number(r.min_order_qty),
            _number(r.unit_cost),
            _number(getattr(r, "unit_price", None)),
        )
    return out


def read_published_stock(hook: Any, schema: str | None = None, products_query: str | None = None) -> PublishedStock:
    """The latest published demand and inventory and the products, through ``hook`` (an Airflow source hook).

    Tables that are absent (no ingest has published them yet) give empty maps, not errors.
    """
    demand = latest_output(hook, DEMAND_TABLE, schema)
    inventory = latest_output(hook, INVENTORY_TABLE, schema)
    sql = SourceQueries.default(schema, products_query).products
    products = read_optional(hook, sql, PRODUCT_COLUMNS, "products")

    def key(rows: pd.DataFrame | None) -> OutputKey | None:
        return None if rows is None else OutputKey(str(rows["pipeline"].iloc[0]), str(rows["cutoff_week"].iloc[0]))

    return PublishedStock(
        key(demand), demand_by_sku(demand), key(inventory), stock_by_sku(inventory), products_by_sku(products)
    )
