"""Answering a caller that knows only the SKU: the inputs a request leaves out, from what is published.

``/forecast`` and ``/recommend_order`` take each item's history (and for orders on hand, lead time,
MOQ, unit cost) from the request when it is given, and otherwise from the latest published tables of
the source database (:class:`~training.data.published.PublishedStock`: ``stock_weekly_demand``,
``stock_weekly_inventory``, ``products``), read through the source connection by :class:`StockLookup`.
Every answer says which: ``history_source`` and ``as_of_week`` (the last week of the history used),
and for orders ``inputs`` (where each stock input came from). Orders in transit are not published, so
``on_order`` is 0 unless the request gives it, and the answer says so.

A SKU without a history in the request and none published is a 404 naming it, and so is an input the
order needs that neither the request nor the tables have for the SKU (on hand, lead time): what is not
found is that SKU's published value, and the body names the field to send instead. (The request itself
is valid, so not a 422: schema-valid bodies are answered, which the API contract test holds to.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from serving.bentos.errors import NotFound
from serving.bentos.orders import OrderInput
from serving.bentos.schemas import MAX_WEEKS, ForecastItem, Observation, SeriesIn
from serving.bentos.schemas_ops import OrderItem
from serving.bentos.source_lookup import DEFAULT_TTL_S, TtlLookup, source_hook
from stockml.settings import Settings
from training.data.published import INVENTORY_TABLE, PublishedStock, read_published_stock
from training.data.weekly import week_start_of

REQUEST, PUBLISHED = "request", "published"
ON_ORDER_ASSUMED = "assumed 0: orders in transit are not published (send on_order to give it)"


class StockLookup(TtlLookup[PublishedStock]):
    """The latest :class:`PublishedStock`, loaded on first use and again after ``ttl_s`` seconds."""

    what = "the published stock tables (stock_weekly_demand, stock_weekly_inventory, products)"

    def __init__(self, load: Callable[[], PublishedStock], ttl_s: float = DEFAULT_TTL_S) -> None:
        super().__init__(load, PublishedStock(), ttl_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> StockLookup:
        def load() -> PublishedStock:
            return read_published_stock(source_hook(settings), settings.source_schema, settings.products_query)

        return cls(load)


@dataclass(frozen=True)
class Provenance:
    """Where one SKU's history came from, and its last week."""

    history_source: str
    as_of_week: dt.date


def needs_published(items: Sequence[ForecastItem]) -> bool:
    """Whether any item leaves out something the published tables would give."""
    if any(item.history is None for item in items):
        return True
    return any(
        isinstance(item, OrderItem) and None in (item.on_hand, item.lead_time_weeks, item.min_order_qty, item.unit_cost)
        for item in items
    )


def unknown_sku(sku: str, stock: PublishedStock, index: int) -> NotFound:
    return NotFound(
        f"unknown sku {sku!r}: no history in the request and none published ({stock.describe()}); send its history",
        field=f"items[{index}].sku",
        sku=sku,
    )


def resolve_series(
    items: Sequence[ForecastItem], stock: PublishedStock, positions: dict[str, int] | None = None
) -> tuple[list[SeriesIn], dict[str, Provenance]]:
    """Each SKU with the history to forecast from (the request's, else the published one) and its provenance.

    Raises :class:`NotFound` for a SKU with neither, naming ``items[i]``: its position in the request
    (``positions``: the first request item of each SKU, when ``items`` are the SKUs pooled), so the
    client sees the index it sent.
    """
    series: list[SeriesIn] = []
    provenance: dict[str, Provenance] = {}
    for i, item in enumerate(items):
        if item.history is not None:
            series.append(item)
            provenance[item.sku] = Provenance(REQUEST, week_start_of(max(o.ds for o in item.history)))
            continue
        published = stock.demand.get(item.sku)
        if published is None or stock.as_of_week is None:
            raise unknown_sku(item.sku, stock, positions.get(item.sku, i) if positions else i)
        weeks, units = (values[-MAX_WEEKS:] for values in published)
        history = [Observation.model_construct(ds=d, y=y) for d, y in zip(weeks, units, strict=True)]
        series.append(SeriesIn.model_construct(sku=item.sku, history=history))
        provenance[item.sku] = Provenance(PUBLISHED, stock.as_of_week)
    return series, provenance


def resolve_order_input(item: OrderItem, stock: PublishedStock, index: int) -> tuple[OrderInput, dict[str, str]]:
    """The policy's input for one order item: each value from the request, else from the published tables.

    Returns (the input, where each stock value came from). Raises :class:`NotFound` (404, naming the SKU
    and the field) when on hand or the lead time is neither in the request nor published for the SKU.
    """
    inputs: dict[str, str] = {}
    on_hand = item.on_hand
    if on_hand is None:
        latest = stock.stock.get(item.sku)
        if latest is None or latest.on_hand is None:
            raise NotFound(
                f"no published stock for sku {item.sku!r}: the request has no on_hand and {INVENTORY_TABLE} "
                "has no stock count for it; send on_hand",
                field=f"items[{index}].on_hand",
                sku=item.sku,
            )
        on_hand = latest.on_hand
        censored = ", a stock-out week" if latest.censored else ""
        inputs["on_hand"] = f"{PUBLISHED}: {INVENTORY_TABLE}, week {latest.week.isoformat()}{censored}"
    else:
        inputs["on_hand"] = REQUEST
    product = stock.products.get(item.sku)
    lead = item.lead_time_weeks
    if lead is None:
        if product is None or product.lead_time_weeks is None:
            raise NotFound(
                f"no published lead time for sku {item.sku!r}: the request has no lead_time_weeks and the "
                "products table has none for it; send lead_time_weeks",
                field=f"items[{index}].lead_time_weeks",
                sku=item.sku,
            )
        lead = product.lead_time_weeks
        inputs["lead_time_weeks"] = f"{PUBLISHED}: products"
    else:
        inputs["lead_time_weeks"] = REQUEST
    inputs["on_order"] = REQUEST if item.on_order is not None else ON_ORDER_ASSUMED

    def optional(name: str, given: float | None, published: float | None) -> float | None:
        if given is not None:
            inputs[name] = REQUEST
            return given
        inputs[name] = f"{PUBLISHED}: products" if published is not None else "none"
        return published

    moq = optional("min_order_qty", item.min_order_qty, product.min_order_qty if product else None)
    cost = optional("unit_cost", item.unit_cost, product.unit_cost if product else None)
    price = optional("unit_price", item.unit_price, product.unit_price if product else None)
    order = OrderInput(
        on_hand=on_hand,
        lead_time_weeks=lead,
        on_order=item.on_order or 0.0,
        review_period_weeks=item.review_period_weeks,
        service_level=item.service_level,
        unit_cost=cost,
        holding_cost_rate=item.holding_cost_rate,
        min_order_qty=moq,
        unit_price=price,
    )
    return order, inputs
