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
MAX_WEEKS = 1040  # span of one history, first to last week (20 years)
MAX_Y = 1e12  # weekly demand beyond this is a unit error, and overflows interval arithmetic
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2200, 12, 31)  # pandas' nanosecond range ends in 2262


class Observation(BaseModel):
    """One demand observation: units sold (or consumed) on ``ds``."""

    model_config = ConfigDict(extra="forbid")

    ds: Annotated[
        dt.date,
        # bounds checked by pydantic-core itself (no Python validator per observation: hot path)
        Field(strict=True, ge=MIN_DATE, le=MAX_DATE, description="ISO date, YYYY-MM-DD (1900-01-01 .. 2200-12-31)."),
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
            min_length=2,
            max_length=MAX_POINTS,
            description=f"2..{MAX_POINTS} observations covering at least 2 different Monday-to-Sunday weeks and "
            f"spanning at most {MAX_WEEKS} weeks from the first to the last.",
        ),
    ]

    @field_validator("history")
    @classmethod
    def _weeks(cls, v: list[Observation]) -> list[Observation]:
        # W-MON week numbers (the library's): at least 2 distinct weeks <=> the first and last week differ
        first, last = week_number(min(o.ds for o in v)), week_number(max(o.ds for o in v))
        if first == last:
            raise ValueError("history must cover at least 2 different weeks")
        span = last - first + 1
        if span > MAX_WEEKS:
            raise ValueError(f"history spans {span} weeks; at most {MAX_WEEKS} are accepted")
        return v


Items = Annotated[
    list[SeriesIn], Field(min_length=1, max_length=MAX_ITEMS, description="1..1000 SKUs, each sku at most once.")
]
Horizon = Annotated[int, Field(strict=True, ge=1, le=MAX_HORIZON, description="Weeks ahead, 1..104.")]


def unique_by(items: list, field: str = "sku") -> list:
    """``items`` unchanged, or a ValueError naming the first ``field`` value that appears twice."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = getattr(item, field)
        if key in seen:
            raise ValueError(f"{field} {key!r} appears twice (items[{seen[key]}] and items[{i}])")
        seen[key] = i
    return items


class ClassifyRequest(BaseModel):
    """Series to classify, each SKU at most once."""

    model_config = ConfigDict(extra="forbid")

    items: Items

    @field_validator("items")
    @classmethod
    def _skus(cls, v: list[SeriesIn]) -> list[SeriesIn]:
        return unique_by(v)


class ForecastRequest(ClassifyRequest):
    """The same series, and how many weeks ahead to forecast them."""

    horizon: Horizon = 13


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = False


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


class SkuForecast(BaseModel):
    sku: str
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


class SkuClass(BaseModel):
    sku: str
    pattern: Literal["smooth", "erratic", "intermittent", "lumpy"]
    adi: float | None = Field(description="Average inter-demand interval (weeks between sales).")
    cv2: float | None = Field(description="Squared coefficient of variation of the non-zero sales.")
    cv: float | None = Field(description="Coefficient of variation of weekly demand (drives XYZ).")
    xyz: Literal["X", "Y", "Z"]
    weeks: int


class ClassifyResponse(BaseModel):
    rule: dict[str, Any]
    rule_source: str
    note: str
    items: list[SkuClass]
