"""Request and response models of the operations endpoints: ``/recommend_order`` and ``/batch*``.

Kept apart from :mod:`serving.bentos.schemas` (the forecast API) but built on the same types, so a
history is validated exactly as for ``/forecast`` and failures get the same 422 body.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.bentos.schemas import MAX_HORIZON, MAX_ITEMS, MAX_Y, ForecastItem, HistorySource, pool_by_sku
from serving.bentos.traffic import FeedbackItem, FeedbackRequest

MAX_LEAD_WEEKS = 52
MAX_REVIEW_WEEKS = MAX_HORIZON - MAX_LEAD_WEEKS  # lead time + review period <= the forecast horizon limit

Units = Annotated[float, Field(strict=True, ge=0, le=MAX_Y, allow_inf_nan=False)]


PUBLISHED = "published"  # where a by-SKU input came from: the source database's published tables


OrderPolicyChoice = Literal["auto", "base-stock"]


class OrderItem(ForecastItem):
    """One SKU: its demand history (as for ``/forecast``, optional) and its stock situation. Left out, the
    history, ``on_hand``, ``lead_time_weeks``, ``min_order_qty`` and ``unit_cost`` come from what the platform
    has published (stock_weekly_demand, stock_weekly_inventory, products); what the request gives wins."""

    model_config = ConfigDict(extra="forbid")

    on_hand: Annotated[
        Units | None,
        Field(description="Units in stock now (net of backorders). Optional: the latest published week's on hand."),
    ] = None
    on_order: Annotated[
        Units | None,
        Field(description="Units ordered and not yet received. Optional: unknown to the platform, 0 is assumed."),
    ] = None
    lead_time_weeks: Annotated[
        int | None,
        Field(strict=True, ge=1, le=MAX_LEAD_WEEKS, description="Weeks from order to receipt, 1..52. Optional: "
              "the products table's."),
    ] = None  # fmt: skip
    review_period_weeks: Annotated[
        int, Field(strict=True, ge=1, le=MAX_REVIEW_WEEKS, description=f"Weeks between orders, 1..{MAX_REVIEW_WEEKS}.")
    ] = 1
    service_level: Annotated[
        float,
        Field(strict=True, ge=0.5, le=0.999, allow_inf_nan=False, description="Cycle service level, 0.5..0.999."),
    ] = 0.95
    unit_cost: Annotated[
        Units | None, Field(description="Cost per unit (for order value and holding cost). Optional: the products "
                            "table's.")
    ] = None  # fmt: skip
    holding_cost_rate: Annotated[
        float | None,
        Field(strict=True, ge=0, le=10, allow_inf_nan=False, description="Holding cost per year, fraction of cost."),
    ] = None
    min_order_qty: Annotated[
        Units | None, Field(description="Minimum order quantity (MOQ). Optional: the products table's.")
    ] = None
    unit_price: Annotated[
        Units | None,
        Field(description="Selling price per unit: with unit_cost, the margin a lost sale costs (the RL agent's "
              "shortage penalty). Optional: the products table's."),
    ] = None  # fmt: skip
    policy: Annotated[
        OrderPolicyChoice,
        Field(description="auto: the RL agent (stockml-rl-agent@champion) for demand patterns where it beat the "
              "tuned classical policies on the held-out year, else base-stock; base-stock: always the base-stock "
              "policy on the forecast."),
    ] = "auto"  # fmt: skip


class RecommendOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[
        list[OrderItem],
        Field(
            min_length=1,
            max_length=MAX_ITEMS,
            description="1..1000 items, each answered with its own stock situation; items naming the same sku "
            "share one forecast, from their pooled histories.",
        ),
    ]

    def series(self) -> list[ForecastItem]:
        """One series per sku (histories of items naming the same sku pooled): what is forecast."""
        return pool_by_sku(list(self.items))


class FeedbackBody(BaseModel):
    """The ``/feedback`` body: items naming the same forecast_id are one item (their actuals pooled, as
    several actuals in one week are summed); :meth:`request` is what the engine scores."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[
        list[FeedbackItem],
        Field(
            min_length=1,
            max_length=MAX_ITEMS,
            description="1..1000 items; items naming the same forecast_id are pooled into one.",
        ),
    ]

    def request(self) -> FeedbackRequest:
        pooled: dict[str, list] = {}
        for item in self.items:
            pooled.setdefault(item.forecast_id, []).extend(item.actuals)
        items = [FeedbackItem.model_construct(forecast_id=k, actuals=v) for k, v in pooled.items()]
        return FeedbackRequest.model_construct(items=items)  # validated above; pooling keeps it valid but long


class OrderRecommendationOut(BaseModel):
    sku: str
    policy_reason: str = Field(description="Why this policy answered (the agent, or why base-stock did).")
    expected_cost_per_period: float | None = Field(
        description="Expected cost per week (holding + lost sales) of the answering policy from the current "
        "stock, simulated over the next 26 weeks on the SKU's last year of demand; null without demand or prices."
    )
    agent_version: str | None = Field(description="The stockml-rl-agent version that answered, when it did.")
    order_qty: float
    order_up_to: float
    safety_stock: float
    expected_demand: float = Field(description="Forecast demand over lead time + review period.")
    inventory_position: float
    sigma: float = Field(description="Standard deviation of demand over lead time + review period.")
    z: float
    weeks_covered: int
    service_level: float
    policy: str
    order_value: float | None
    holding_cost_per_week: float | None
    model_version: str
    method: str
    pattern: str
    as_of_week: dt.date = Field(description="Monday of the last week of the demand history forecast from.")
    history_source: HistorySource
    inputs: dict[str, str] = Field(
        description="Where each stock input came from: request, published (stock_weekly_inventory, products), "
        "or assumed (on_order: 0, receipts in transit are not published)."
    )


class RecommendOrderResponse(BaseModel):
    model_name: str
    model_version: str
    policy: str
    formula: str
    items: list[OrderRecommendationOut]


JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="The id returned by POST /batch.")]


class BatchStatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: JobId


class BatchResultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: JobId
    format: Literal["csv", "json", "xlsx"] = "csv"


class NotificationOut(BaseModel):
    """How a batch job's end notification went on one channel."""

    state: Literal["pending", "delivered", "failed"]
    attempts: int = Field(default=0, description="Tries so far (the first one and the retries).")
    target: str | None = Field(default=None, description="The URL (without query) or the recipient.")
    ok: bool | None = None
    status: int | None = Field(default=None, description="The last HTTP status or SMTP reply code.")
    error: str | None = Field(default=None, description="Why the last try failed.")
    at: str | None = Field(default=None, description="When the last try ended (UTC).")


class JobOut(BaseModel):
    """A batch job's state and progress (``POST /batch``, ``/batch_status``)."""

    job_id: str
    state: Literal["queued", "running", "done", "failed"]
    horizon: int
    skus_total: int
    rows: int
    skus_done: int
    progress: float = Field(description="SKUs done / total, 0..1.")
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_name: str | None
    model_version: str | None
    error: str | None
    submitted_by: str | None
    restarts: int
    seconds: float | None = Field(description="Forecasting wall time of a finished job.")
    callback_url: str | None = Field(default=None, description="Where the job's end is POSTed (signed), if asked.")
    notify_email: str | None = Field(default=None, description="Who is e-mailed at the job's end, if asked.")
    notifications: dict[str, NotificationOut] = Field(
        default_factory=dict,
        description="Per channel (callback, email) the delivery of the job's end: pending until it was tried.",
    )


# ---------------------------------------------------------------- answers of the model and bandit endpoints


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # a later key is an addition, not a break


class ModelInfo(_Open):
    model: str
    ready: bool = Field(description="Whether a champion is loaded (what /readyz says).")
    aliases: dict[str, dict[str, Any] | None] = Field(description="Per alias: version, run_id, loaded_at, router.")
    poll_s: float
    last_check: str | None
    last_error: str | None
    reloads: int
    cache: Literal["memory", "redis"]
    timesfm: dict[str, Any] | None = Field(
        default=None,
        description="The TimesFM checkpoint here: available, checkpoint (path), source, detail (why not).",
    )


class ReloadAnswer(_Open):
    model: str
    aliases: dict[str, dict[str, Any]] = Field(description="Per alias: from, to, changed (and error).")
    versions: dict[str, str | None]
    error: str | None = Field(default=None, description="The registry error of this check, if any.")


class PosteriorOut(_Open):
    alpha: float
    beta: float
    n: int
    mean: float


class BanditState(_Open):
    model: str
    routing: str
    champion: str | None
    challenger: str | None
    posteriors: dict[str, PosteriorOut] = Field(description="Beta posterior of the reward, per version.")
    p_challenger_better: float | None
    traffic_shares: dict[str, float]
    stopped: bool
    config: dict[str, Any]
    decisions: list[dict[str, Any]] = Field(description="The last 20 decisions (stop, promote, refused, failed).")
    rule: str | None = Field(default=None, description="What the decision rule says now (promote, stop, explore).")
    rule_reason: str | None = None


class ScoredOut(_Open):
    forecast_id: str
    model_version: str | None
    reward: float | None = Field(description="Mean reward of the weeks counted now, in (0, 1].")
    counted: int
    duplicates: int
    points: list[dict[str, Any]] | None


class FeedbackErrorOut(_Open):
    index: int
    field: str
    forecast_id: str
    error: str


class FeedbackAnswer(_Open):
    items: list[ScoredOut]
    errors: list[FeedbackErrorOut] = Field(description="Items that were not scored (unknown forecast_id, ...).")
    decision: dict[str, Any] | None = Field(description="What the bandit did after this feedback, if anything.")
    bandit: BanditState
