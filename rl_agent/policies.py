"""Replenishment policies behind one interface: a :class:`Situation` in, order quantities out.

The classical policies act on the inventory position (on hand, net of backlog, plus open orders).
Their parameters may be scalars or per-row arrays, so one policy object can run a batch of products or
a grid of candidate parameters at once (that is how :mod:`rl_agent.tuning` searches).
The RL agent (:mod:`rl_agent.agent`) implements the same ``order`` method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rl_agent.dp import DPResult
from rl_agent.dynamics import BatchParams, BatchState


@dataclass
class Situation:
    """What a policy sees at decision time, per row: the state, the product's parameters and, when the
    caller has them, the forecast (mean demand per period over the next ``L + R`` periods, and the 80 %
    upper bound of the next period's demand)."""

    state: BatchState
    params: BatchParams
    forecast_mean: np.ndarray | None = None
    forecast_upper: np.ndarray | None = None


class Policy(Protocol):
    name: str

    def order(self, situation: Situation) -> np.ndarray:
        """The order quantity per row (before the environment applies MOQ, caps and review periods)."""
        ...


@dataclass
class BaseStock:
    """Order up to ``level`` on the inventory position: ``q = max(S - IP, 0)``."""

    level: np.ndarray | float
    name: str = "base_stock"

    def order(self, situation: Situation) -> np.ndarray:
        return np.maximum(np.asarray(self.level, dtype=float) - situation.state.position, 0.0)


@dataclass
class CappedBaseStock:
    """Base-stock with a cap on each order, ``q = min(max(S - IP, 0), cap)``: under lost sales it
    smooths the orders, which is close to optimal (Xin 2021)."""

    level: np.ndarray | float
    cap: np.ndarray | float
    name: str = "capped_base_stock"

    def order(self, situation: Situation) -> np.ndarray:
        wanted = np.maximum(np.asarray(self.level, dtype=float) - situation.state.position, 0.0)
        return np.minimum(wanted, np.asarray(self.cap, dtype=float))


@dataclass
class MinMax:
    """(s, S): when the inventory position is at or below ``s``, order up to ``S``; else nothing."""

    reorder_point: np.ndarray | float
    order_up_to: np.ndarray | float
    name: str = "s_S"

    def order(self, situation: Situation) -> np.ndarray:
        position = situation.state.position
        low = position <= np.asarray(self.reorder_point, dtype=float)
        return np.where(low, np.maximum(np.asarray(self.order_up_to, dtype=float) - position, 0.0), 0.0)


@dataclass
class DPPolicy:
    """The DP's optimal order table (one instance, lead time ``L``), looked up per row."""

    result: DPResult
    lead_time: int
    name: str = "optimal"

    def order(self, situation: Situation) -> np.ndarray:
        table = self.result.policy
        x = np.clip(np.rint(situation.state.on_hand).astype(int) - self.result.min_stock, 0, table.shape[0] - 1)
        if self.lead_time <= 1:
            return table[x].astype(float)
        pipe = np.rint(situation.state.pipeline[:, : self.lead_time - 1]).astype(int)
        pipe = np.clip(pipe, 0, table.shape[-1] - 1)
        return table[(x, *pipe.T)].astype(float)
