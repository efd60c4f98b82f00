"""Run a policy over given demand paths and summarise what it cost.

One call simulates a batch of rows (seeds, candidate parameters or products) in lock-step through
:func:`rl_agent.dynamics.step`. Demand paths are given, never drawn here, so two policies can be scored
on the same paths (common random numbers): their difference is then far less noisy than either cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from rl_agent.dynamics import BatchParams, BatchState, step
from rl_agent.policies import Policy, Situation


@dataclass
class SimulationResult:
    """Per row, over the scored periods (after the warm-up): the cost terms and service figures."""

    cost_per_period: np.ndarray
    holding_per_period: np.ndarray
    shortage_per_period: np.ndarray
    ordering_per_period: np.ndarray
    fill_rate: np.ndarray
    cycle_service: np.ndarray
    average_stock: np.ndarray
    periods: int

    @property
    def total_cost(self) -> np.ndarray:
        return self.cost_per_period * self.periods


def simulate(
    policy: Policy,
    params: BatchParams,
    demand: np.ndarray,
    start: BatchState | None = None,
    forecast_mean: np.ndarray | None = None,
    forecast_upper: np.ndarray | None = None,
    warmup: int = 0,
) -> SimulationResult:
    """Simulate ``policy`` on ``demand`` (rows x periods); the first ``warmup`` periods are not scored.

    ``forecast_mean`` / ``forecast_upper`` (same shape as ``demand``) are the per-origin forecasts made at
    each period's decision (see :class:`rl_agent.env.ProductCase`): the mean per period over the next
    ``L + R`` periods and the period's 80 % bound; the policy sees column ``t`` at period ``t``.
    """
    demand = np.asarray(demand, dtype=float)
    if demand.ndim != 2 or demand.shape[0] != params.n:
        raise ValueError(f"demand must have shape (rows={params.n}, periods), got {demand.shape}")
    if not 0 <= warmup < demand.shape[1]:
        raise ValueError(f"warmup must be in [0, periods), got {warmup!r} for {demand.shape[1]} periods")
    state = start.copy() if start is not None else BatchState.start(params)
    sums = {k: np.zeros(params.n) for k in ("cost", "hold", "short", "order", "demand", "served", "ok", "stock")}
    for t in range(demand.shape[1]):
        situation = Situation(
            state,
            params,
            None if forecast_mean is None else forecast_mean[:, t],
            None if forecast_upper is None else forecast_upper[:, t],
        )
        state, out = step(params, state, policy.order(situation), demand[:, t])
        if t < warmup:
            continue
        sums["cost"] += out.cost
        sums["hold"] += out.holding_cost
        sums["short"] += out.shortage_cost
        sums["order"] += out.fixed_cost + out.purchase_cost
        sums["demand"] += out.demand
        sums["served"] += out.served
        sums["ok"] += out.served >= out.demand
        sums["stock"] += np.maximum(out.end_stock, 0.0)
    periods = demand.shape[1] - warmup
    return SimulationResult(
        cost_per_period=sums["cost"] / periods,
        holding_per_period=sums["hold"] / periods,
        shortage_per_period=sums["short"] / periods,
        ordering_per_period=sums["order"] / periods,
        fill_rate=np.where(sums["demand"] > 0, sums["served"] / np.maximum(sums["demand"], 1e-12), 1.0),
        cycle_service=sums["ok"] / periods,
        average_stock=sums["stock"] / periods,
        periods=periods,
    )


def mean_ci95(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and the 95 % Student-t interval of the mean over independent replications."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return mean, mean - half, mean + half
