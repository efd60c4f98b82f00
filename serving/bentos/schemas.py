"""Request and response models of the HTTP API, and how a validation failure is reported.

These models are the contract: the HTTP layer (:mod:`serving.bentos.http`) validates each raw body
against them once (pydantic's JSON mode, so ``strict`` fields take JSON's types) and FastAPI publishes
the same models in the OpenAPI (``/docs.json``), so the schema states exactly what is accepted. A
failure is a **422** naming each field (:func:`serving.bentos.errors.validation_body`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.data.weekly import week_number

MAX_ITEMS = 1000
MAX_HORIZON = 104
MAX_POINTS = 10_000  # observations per SKU (daily data is fine: it is summed into weeks)
MAX_WEEKS = 1040  # weeks of one history used, up to its latest week (20 years); older ones are ignored
MAX_Y = 1e12  # weekly demand beyond this is a unit error, and overflows interval arithmetic
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)  # pandas' nanosecond range ends in 2262


# the date range as a pattern, so the published schema states it (pydantic's ge/le on a date are not
# written into the JSON schema): years 1900..2200, months 01..12, days 01..31 (the calendar check is format: date)
DATE_PATTERN = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


class Observation(BaseModel):
    """One demand observation: units sold (or consumed) on ``ds``."""

    model_config = ConfigDict(extra="forbid")

    ds: Annotated[
        dt.date,
        # bounds checked by pydantic-core itself (no Python validator per observation: hot path)
        Field(
            strict=True,
            ge=MIN_DATE,
            le=MAX_DATE,
            description="ISO date, YYYY-MM-DD (1900-01-01 .. 2200-12-31).",
            json_schema_extra={"pattern": DATE_PATTERN},
        ),
    ]
    y: Annotated[
        float,
        Field(strict=True, ge=0, le=MAX_Y, allow_inf_nan=False, description="Demand, a finite number >= 0."),
    ]


class SeriesIn(BaseModel):
    """One SKU's demand history; several observations in one week are summed, missing weeks are zero."""

    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=200, description="Product identifier.")]
    history: Annotated[
        list[Observation],
        Field(
            min_length=1,
            max_length=MAX_POINTS,
            description=f"1..{MAX_POINTS} observations. Only the last {MAX_WEEKS} weeks (up to the latest "
            "observation's week) are used; older observations are ignored. A history covering a single "
            "Monday-to-Sunday week is answered with that week's demand repeated (Naive), without intervals.",
        ),
    ]

    @field_validator("history")
    @classmethod
    def _last_weeks(cls, v: list[Observation]) -> list[Observation]:
        return last_weeks(v)


BY_SKU = (
    "Optional: without it the SKU's latest published weekly demand (stock_weekly_demand, read from the source "
    "database) is used, and an unknown SKU gets 404. Given, it wins over the published one."
)


class ForecastItem(SeriesIn):
    """One SKU, with its demand history or (the history left out) by SKU alone from the published tables."""

    history: Annotated[
        list[Observation] | None,
        Field(min_length=1, max_length=MAX_POINTS, description=f"1..{MAX_POINTS} observations, as for /classify. "
              + BY_SKU),
    ] = None  # fmt: skip

    @field_validator("history")
    @classmethod
    def _last_weeks(cls, v: list[Observation] | None) -> list[Observation] | None:
        return None if v is None else last_weeks(v)


def last_weeks(v: list[Observation]) -> list[Observation]:
    """The observations of the last ``MAX_WEEKS`` W-MON weeks (the library's week numbers) up to the latest."""
    first = week_number(max(o.ds for o in v)) - MAX_WEEKS + 1
    if week_number(min(o.ds for o in v)) >= first:
        return v
    return [o for o in v if week_number(o.ds) >= first]


def pool_by_sku(items: list[SeriesIn]) -> list[SeriesIn]:
    """``items`` with one entry per sku, in order of first appearance: the histories of items naming the
    same sku are one series (their observations pooled, as several observations in one week are summed;
    items without a history add none)."""
    first: dict[str, int] = {}
    pooled: list[SeriesIn] = []
    for item in items:
        i = first.setdefault(item.sku, len(pooled))
        if i == len(pooled):
            pooled.append(item)
        else:
            merged = [*(pooled[i].history or []), *(item.history or [])]
            pooled[i] = type(pooled[i]).model_construct(sku=item.sku, history=last_weeks(merged) if merged else None)
    return pooled


def unique_by(items: list, field: str = "sku") -> list:
    """``items`` unchanged, or a ValueError naming the first ``field`` value that appears twice."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = getattr(item, field)
        if key in seen:
            raise ValueError(f"{field} {key!r} appears twice (items[{seen[key]}] and items[{i}])")
        seen[key] = i
    return items


SAME_SKU = "items naming the same sku are one series: their histories are pooled and answered once"
Items = Annotated[list[SeriesIn], Field(min_length=1, max_length=MAX_ITEMS, description=f"1..1000 SKUs; {SAME_SKU}.")]
Horizon = Annotated[int, Field(strict=True, ge=1, le=MAX_HORIZON, description="Weeks ahead, 1..104.")]


class ClassifyRequest(BaseModel):
    """Series to classify."""

    model_config = ConfigDict(extra="forbid")

    items: Items

    @field_validator("items")
    @classmethod
    def _pool(cls, v: list[SeriesIn]) -> list[SeriesIn]:
        return pool_by_sku(v)


class ForecastRequest(BaseModel):
    """The series (each with its history, or by SKU alone), and how many weeks ahead to forecast them."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[
        list[ForecastItem], Field(min_length=1, max_length=MAX_ITEMS, description=f"1..1000 SKUs; {SAME_SKU}.")
    ]
    horizon: Horizon = 13

    @field_validator("items")
    @classmethod
    def _pool(cls, v: list[ForecastItem]) -> list[ForecastItem]:
        return pool_by_sku(v)


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: Annotated[bool, Field(strict=True, description="Reload even when the version did not change.")] = False


class EmptyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- responses


class ForecastPoint(BaseModel):
    ds: dt.date
    step: int
    yhat: float | None
    lo80: float | None
    hi80: float | None
    lo95: float | None
    hi95: float | None


HistorySource = Literal["request", "published"]


class SkuForecast(BaseModel):
    sku: str
    as_of_week: dt.date = Field(description="Monday of the last week of the history forecast from.")
    history_source: HistorySource = Field(
        description="request: the history sent; published: the latest stock_weekly_demand of the source database."
    )
    forecast_id: str = Field(description="Quote it when sending the actuals back (feedback).")
    model_version: str
    cached: bool
    method: str
    weights: dict[str, float]
    confidence: float | None
    pattern: str
    explanation: str
    forecasts: list[ForecastPoint]


class ForecastResponse(BaseModel):
    model_name: str
    model_version: str
    horizon: int
    items: list[SkuForecast]


class RelatedProduct(BaseModel):
    sku: str = Field(description="A product often bought in the same order.")
    confidence: float = Field(description="Share of the orders holding the SKU that also hold this product.")
    lift: float = Field(description="Confidence over this product's own share of orders (1: no association).")


class SkuClass(BaseModel):
    sku: str
    pattern: Literal["smooth", "erratic", "intermittent", "lumpy"]
    adi: float | None = Field(description="Average inter-demand interval (weeks between sales).")
    cv2: float | None = Field(description="Squared coefficient of variation of the non-zero sales.")
    cv: float | None = Field(description="Coefficient of variation of weekly demand (drives XYZ).")
    xyz: Literal["X", "Y", "Z"]
    weeks: int
    related: list[RelatedProduct] = Field(
        default_factory=list,
        description="Products bought with this SKU (stock_related, the latest data cut-off; association rules "
        "on customer order lines), strongest first, at most 10; empty when there are none or the source has "
        "no order_lines table.",
    )


class ClassifyResponse(BaseModel):
    rule: dict[str, Any]
    rule_source: str
    note: str
    items: list[SkuClass]
