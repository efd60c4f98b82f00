"""The inventory dynamics, once, batched over rows with numpy.

Every consumer (the gymnasium environment, the vectorised training environment, the policy simulator
and tuner) steps through :func:`step`, so the environment the agent learns in and the simulator that
scores the classical policies cannot drift apart.

Timing (the classical lost-sales convention, Zipkin 2008): at the start of period ``t`` the order placed
at ``t - L`` has arrived; the decision sees that on-hand stock and the open orders; an order placed now
arrives at the start of ``t + L`` (with ``L = 0`` it arrives at once, before demand); then demand occurs;
unmet demand is lost (lost sales) or carried as a backlog (backorder, on-hand goes negative), the
shortage penalty ``p`` is charged per unit lost or per unit backlogged at the period's end, holding ``h``
per unit left at the period's end, plus the fixed cost ``K`` per order placed and the purchase cost ``c``
per unit ordered.

Rows may differ in every parameter, lead times included: the pipeline is a left-aligned array of width
``max(L)`` whose column ``k`` arrives at the start of period ``t + 1 + k``; a new order goes into column
``L - 1`` of its row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

Mode = Literal["lost_sales", "backorder"]
MODES: tuple[str, ...] = ("lost_sales", "backorder")


@dataclass(frozen=True)
class CostConfig:
    """Per-unit and per-order costs of one product, in money per period (a week)."""

    holding: float
    penalty: float
    fixed_order: float = 0.0
    purchase: float = 0.0

    def __post_init__(self) -> None:
        for name in ("holding", "penalty", "fixed_order", "purchase"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"cost {name} must be a finite number >= 0, got {value!r}")

    @classmethod
    def from_product(
        cls,
        unit_cost: float,
        unit_price: float,
        holding_rate_per_year: float = 0.25,
        penalty_per_unit: float | None = None,
        fixed_order: float = 0.0,
        purchase: bool = False,
    ) -> CostConfig:
        """Costs from a product's data: holding as a yearly rate of the unit cost, spread over 52 weeks;
        the lost-sales/shortage penalty from the margin (``unit_price - unit_cost``) unless given."""
        if unit_cost <= 0 or unit_price <= 0:
            raise ValueError(f"unit_cost and unit_price must be > 0, got {unit_cost!r}, {unit_price!r}")
        margin = unit_price - unit_cost
        penalty = penalty_per_unit if penalty_per_unit is not None else max(margin, 0.0)
        return cls(
            holding=unit_cost * holding_rate_per_year / 52.0,
            penalty=float(penalty),
            fixed_order=float(fixed_order),
            purchase=float(unit_cost) if purchase else 0.0,
        )


@dataclass(frozen=True)
class InventorySpec:
    """One product's replenishment problem: lead time, mode, review period, order limits and costs."""

    costs: CostConfig
    lead_time: int = 0
    mode: Mode = "lost_sales"
    review_period: int = 1
    min_order_qty: int = 1
    max_order_qty: int = 10_000

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 <= self.lead_time <= 52:
            raise ValueError(f"lead_time must be between 0 and 52 periods, got {self.lead_time!r}")
        if self.review_period < 1:
            raise ValueError(f"review_period must be >= 1, got {self.review_period!r}")
        if self.min_order_qty < 0 or self.max_order_qty < max(self.min_order_qty, 1):
            raise ValueError(
                f"need 0 <= min_order_qty <= max_order_qty and max_order_qty >= 1, "
                f"got {self.min_order_qty!r}, {self.max_order_qty!r}"
            )

    def with_(self, **changes: object) -> InventorySpec:
        return replace(self, **changes)


@dataclass
class BatchParams:
    """The parameters of :class:`InventorySpec` as per-row arrays (rows may be different products)."""

    lead: np.ndarray
    review: np.ndarray
    moq: np.ndarray
    max_order: np.ndarray
    holding: np.ndarray
    penalty: np.ndarray
    fixed: np.ndarray
    purchase: np.ndarray
    lost_sales: np.ndarray

    @property
    def n(self) -> int:
        return len(self.lead)

    @property
    def width(self) -> int:
        """Pipeline width: the longest lead time (at least one column, so empty pipelines keep a shape)."""
        return max(int(self.lead.max(initial=0)), 1)

    @classmethod
    def from_specs(cls, specs: list[InventorySpec]) -> BatchParams:
        def arr(values: list[float], dtype: type = float) -> np.ndarray:
            return np.asarray(values, dtype=dtype)

        return cls(
            lead=arr([s.lead_time for s in specs], int),
            review=arr([s.review_period for s in specs], int),
            moq=arr([s.min_order_qty for s in specs]),
            max_order=arr([s.max_order_qty for s in specs]),
            holding=arr([s.costs.holding for s in specs]),
            penalty=arr([s.costs.penalty for s in specs]),
            fixed=arr([s.costs.fixed_order for s in specs]),
            purchase=arr([s.costs.purchase for s in specs]),
            lost_sales=arr([s.mode == "lost_sales" for s in specs], bool),
        )

    @classmethod
    def repeat(cls, spec: InventorySpec, n: int) -> BatchParams:
        return cls.from_specs([spec] * n)

    def take(self, rows: np.ndarray) -> BatchParams:
        return BatchParams(**{k: getattr(self, k)[rows] for k in self.__dataclass_fields__})


@dataclass
class BatchState:
    """On-hand stock (net inventory in backorder mode: negative is a backlog), the open orders and the
    period index of every row, at decision time (after this period's arrival)."""

    on_hand: np.ndarray
    pipeline: np.ndarray
    period: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def copy(self) -> BatchState:
        return BatchState(self.on_hand.copy(), self.pipeline.copy(), self.period.copy())

    @property
    def position(self) -> np.ndarray:
        """Inventory position: on hand (net of backlog) plus everything on order."""
        return self.on_hand + self.pipeline.sum(axis=1)

    @classmethod
    def start(cls, params: BatchParams, on_hand: np.ndarray | float = 0.0) -> BatchState:
        n = params.n
        return cls(
            np.broadcast_to(np.asarray(on_hand, dtype=float), (n,)).copy(),
            np.zeros((n, params.width)),
            np.zeros(n, dtype=int),
        )


@dataclass
class StepOutcome:
    """What one period did, per row: the order actually placed and every cost term."""

    order: np.ndarray
    demand: np.ndarray
    served: np.ndarray
    shortage: np.ndarray
    end_stock: np.ndarray
    holding_cost: np.ndarray
    shortage_cost: np.ndarray
    fixed_cost: np.ndarray
    purchase_cost: np.ndarray

    @property
    def cost(self) -> np.ndarray:
        return self.holding_cost + self.shortage_cost + self.fixed_cost + self.purchase_cost


def feasible_order(params: BatchParams, state: BatchState, wanted: np.ndarray) -> np.ndarray:
    """The order a wish becomes: whole units, none outside a review period, a positive order below the
    minimum order quantity raised to it, capped at the maximum order size."""
    q = np.maximum(np.rint(np.nan_to_num(np.asarray(wanted, dtype=float), nan=0.0)), 0.0)
    q = np.where((q > 0) & (q < params.moq), params.moq, q)
    q = np.minimum(q, params.max_order)
    reviewing = state.period % params.review == 0
    return np.where(reviewing, q, 0.0)


def step(
    params: BatchParams, state: BatchState, wanted: np.ndarray, demand: np.ndarray
) -> tuple[BatchState, StepOutcome]:
    """Advance every row one period; returns the next decision-time state and what happened."""
    q = feasible_order(params, state, wanted)
    d = np.asarray(demand, dtype=float)
    rows = np.arange(params.n)
    on_hand = state.on_hand.copy()
    pipeline = state.pipeline.copy()
    immediate = params.lead == 0
    on_hand = on_hand + np.where(immediate, q, 0.0)
    pipeline[rows[~immediate], params.lead[~immediate] - 1] += q[~immediate]
    available = np.maximum(on_hand, 0.0)
    served = np.minimum(available, d)
    lost = params.lost_sales
    end = np.where(lost, on_hand - served, on_hand - d)
    shortage = np.where(lost, d - served, np.maximum(-end, 0.0))
    outcome = StepOutcome(
        order=q,
        demand=d,
        served=served,
        shortage=shortage,
        end_stock=end,
        holding_cost=params.holding * np.maximum(end, 0.0),
        shortage_cost=params.penalty * shortage,
        fixed_cost=params.fixed * (q > 0),
        purchase_cost=params.purchase * q,
    )
    arrival = pipeline[:, 0]
    next_pipeline = np.zeros_like(pipeline)
    next_pipeline[:, :-1] = pipeline[:, 1:]
    return BatchState(end + arrival, next_pipeline, state.period + 1), outcome
