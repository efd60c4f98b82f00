"""Environments: one product as a gymnasium ``Env``, many products as a numpy-batched sb3 ``VecEnv``.

Both run :class:`BatchedInventory`, which draws demand (Poisson for published instances, or contiguous
circular windows of a product's history, so that the per-origin forecasts stay aligned with the weeks
they were made for), steps :func:`rl_agent.dynamics.step` and builds the observation of
:mod:`rl_agent.features`. The batched form steps hundreds of products in one numpy call, which is what
makes PPO training on a catalogue fast on two cores (a ``DummyVecEnv`` of Python envs would spend its
time in interpreter overhead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from rl_agent.dynamics import BatchParams, BatchState, InventorySpec, StepOutcome, step
from rl_agent.features import (
    CLIP,
    MAX_LEAD,
    OBS_DIM,
    TARGET_RANGE,
    Z80,
    DemandProfile,
    observe,
    order_from_action,
    profile_arrays,
)


@dataclass
class ProductCase:
    """One product for the environments: its problem, its demand model and, optionally, the forecasts.

    Exactly one of ``history`` (demand per period, replayed in circular windows) and ``poisson_mean``.
    ``forecast_mean``/``forecast_upper`` are per-origin forecasts aligned with ``history``: entry ``t`` was
    made at the start of period ``t`` from the periods before it (e.g.
    :func:`training.forecasting.rolling.rolling_forecasts`), ``forecast_mean[t]`` the mean demand per period
    over periods ``t .. t + L + R - 1`` and ``forecast_upper[t]`` the 80 % upper bound of period ``t``. They
    are read as they are at the decision of period ``t`` (never averaged over later entries: those were
    made later, with demand the decision cannot know).
    """

    spec: InventorySpec
    profile: DemandProfile
    history: np.ndarray | None = None
    poisson_mean: float | None = None
    forecast_mean: np.ndarray | None = None
    forecast_upper: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if (self.history is None) == (self.poisson_mean is None):
            raise ValueError("give exactly one of history and poisson_mean")
        if self.history is not None:
            self.history = np.asarray(self.history, dtype=float)
            if self.history.ndim != 1 or len(self.history) == 0 or (self.history < 0).any():
                raise ValueError(f"{self.name or 'product'}: history must be a non-empty 1-d array of values >= 0")
            for label in ("forecast_mean", "forecast_upper"):
                value = getattr(self, label)
                if value is not None and np.shape(value) != self.history.shape:
                    raise ValueError(f"{self.name or 'product'}: {label} must align with history")
        if self.forecast_mean is not None and self.history is None:
            raise ValueError("forecasts need a history to align with")
        if self.spec.lead_time > MAX_LEAD:
            raise ValueError(f"{self.name or 'product'}: lead time {self.spec.lead_time} > {MAX_LEAD} weeks")

    @classmethod
    def poisson(cls, spec: InventorySpec, mean: float, name: str = "") -> ProductCase:
        return cls(spec, DemandProfile.poisson(mean, spec), poisson_mean=float(mean), name=name)


class BatchedInventory:
    """Rows of products stepping in lock-step; row ``i`` runs ``cases[rows[i]]``."""

    def __init__(
        self, cases: list[ProductCase], rows: np.ndarray, episode_length: int, seed: int | None = None
    ) -> None:
        if not cases:
            raise ValueError("need at least one product")
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length!r}")
        self.cases = cases
        self.rows = np.asarray(rows, dtype=int)
        self.episode_length = int(episode_length)
        self.rng = np.random.default_rng(seed)
        self.params = BatchParams.from_specs([cases[i].spec for i in self.rows])
        self.profile = profile_arrays([cases[i].profile for i in self.rows])
        self._demand_tables()
        self.state = BatchState(
            np.zeros(len(self.rows)), np.zeros((len(self.rows), MAX_LEAD)), np.zeros(len(self.rows), int)
        )
        self.offset = np.zeros(len(self.rows), dtype=int)
        self.elapsed = np.zeros(len(self.rows), dtype=int)

    def _demand_tables(self) -> None:
        longest = max((len(c.history) for c in self.cases if c.history is not None), default=1)
        n = len(self.cases)
        self.hist = np.zeros((n, longest))
        self.fmean = np.zeros((n, longest))
        self.fupper = np.zeros((n, longest))
        self.length = np.ones(n, dtype=int)
        self.pmean = np.full(n, np.nan)
        for i, case in enumerate(self.cases):
            mu, cv = case.profile.mean, case.profile.cv
            if case.history is None:
                self.pmean[i] = case.poisson_mean
                self.fmean[i, :] = mu
                self.fupper[i, :] = mu * (1 + Z80 * cv)
                continue
            h = len(case.history)
            self.length[i] = h
            self.hist[i, :h] = case.history
            self.fmean[i, :h] = case.forecast_mean if case.forecast_mean is not None else mu
            self.fupper[i, :h] = case.forecast_upper if case.forecast_upper is not None else mu * (1 + Z80 * cv)

    def reset_rows(self, mask: np.ndarray) -> None:
        """New episodes for the masked rows: a random window offset and a random starting state."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        case = self.rows[idx]
        mu = self.profile["mean"][idx]
        lead = self.params.lead[idx]
        self.offset[idx] = self.rng.integers(0, self.length[case])
        self.elapsed[idx] = 0
        span = mu * (lead + self.params.review[idx] + 2)
        self.state.on_hand[idx] = np.rint(self.rng.uniform(0, 1, idx.size) * span)
        pipe = np.rint(self.rng.poisson(np.repeat(mu[:, None], MAX_LEAD, axis=1)).astype(float))
        pipe[np.arange(MAX_LEAD)[None, :] >= (lead - 1)[:, None]] = 0.0
        self.state.pipeline[idx] = pipe
        self.state.period[idx] = 0

    def _week(self, ahead: int | np.ndarray = 0) -> np.ndarray:
        case = self.rows
        return (self.offset + self.elapsed + ahead) % self.length[case]

    def forecasts(self) -> tuple[np.ndarray, np.ndarray]:
        """The forecast made at the current week's origin: the mean per period over the next ``L + R``
        periods and this period's 80 % bound (per-origin values, read as they are: see :class:`ProductCase`)."""
        case, week = self.rows, self._week()
        return self.fmean[case, week], self.fupper[case, week]

    def observation(self) -> np.ndarray:
        mean, upper = self.forecasts()
        return observe(self.state, self.params, self.profile, mean, upper)

    def draw_demand(self) -> np.ndarray:
        case = self.rows
        poisson = np.isfinite(self.pmean[case])
        demand = self.hist[case, self._week()]
        if poisson.any():
            demand[poisson] = self.rng.poisson(self.pmean[case[poisson]])
        return demand

    def advance(self, orders: np.ndarray) -> tuple[StepOutcome, np.ndarray]:
        """Place ``orders`` (units), draw demand, step; returns the outcome and which rows' episodes ended."""
        self.state, outcome = step(self.params, self.state, orders, self.draw_demand())
        self.elapsed += 1
        return outcome, self.elapsed >= self.episode_length


ActionMode = Literal["target", "quantity"]


class InventoryEnv(gym.Env):
    """One stocked product, weekly periods, as a gymnasium environment.

    The observation is :func:`rl_agent.features.observe` (normalised by the product's mean demand).
    ``action_mode="target"`` (the agent's): one number in [-1, 1], an order-up-to target (see
    :mod:`rl_agent.features`); ``"quantity"``: the order in units, in ``[0, max_order_qty]``. The
    reward is minus the period's cost (holding + shortage/lost sales + fixed ordering + purchase); the
    ``info`` dict has every term. Episodes are truncated after ``episode_length`` periods.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's class attribute

    def __init__(
        self,
        case: ProductCase,
        episode_length: int = 52,
        action_mode: ActionMode = "target",
        target_range: float = TARGET_RANGE,
    ) -> None:
        super().__init__()
        self.target_range = float(target_range)
        if action_mode not in ("target", "quantity"):
            raise ValueError(f"action_mode must be 'target' or 'quantity', got {action_mode!r}")
        self.case = case
        self.episode_length = episode_length
        self.action_mode = action_mode
        self.sim = BatchedInventory([case], np.zeros(1, dtype=int), episode_length)
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(OBS_DIM,), dtype=np.float32)
        if action_mode == "target":
            self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = gym.spaces.Box(0.0, float(case.spec.max_order_qty), shape=(1,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """New episode. ``options`` may set ``on_hand`` and ``pipeline`` (open orders, next arrival
        first) and ``offset`` (the first history week) instead of drawing them."""
        super().reset(seed=seed)
        if seed is not None:
            self.sim.rng = np.random.default_rng(seed)
        self.sim.reset_rows(np.ones(1, dtype=bool))
        options = options or {}
        if "on_hand" in options:
            self.sim.state.on_hand[0] = float(options["on_hand"])
        if "pipeline" in options:
            pipe = np.zeros(MAX_LEAD)
            given = np.asarray(options["pipeline"], dtype=float)
            if len(given) != max(self.case.spec.lead_time - 1, 0):
                raise ValueError(f"pipeline needs {max(self.case.spec.lead_time - 1, 0)} open orders")
            pipe[: len(given)] = given
            self.sim.state.pipeline[0] = pipe
        if "offset" in options:
            self.sim.offset[0] = int(options["offset"])
        return self.sim.observation()[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=float).reshape(1)
        if self.action_mode == "target":
            orders = order_from_action(action, self.sim.state, self.sim.params, self.sim.profile, self.target_range)
        else:
            orders = action
        outcome, ended = self.sim.advance(orders)
        info = {
            k: float(getattr(outcome, k)[0])
            for k in ("order", "demand", "served", "shortage", "end_stock", "holding_cost", "shortage_cost")
        }
        info.update(fixed_cost=float(outcome.fixed_cost[0]), purchase_cost=float(outcome.purchase_cost[0]))
        info["cost"] = float(outcome.cost[0])
        return self.sim.observation()[0], -info["cost"], False, bool(ended[0]), info

    @property
    def state(self) -> BatchState:
        return self.sim.state


class CatalogueVecEnv(VecEnv):
    """Many products as one stable-baselines3 ``VecEnv``, stepped by numpy in one call.

    Rewards are minus the cost divided by ``mu * (h + p)`` of the row's product, so that every product
    weighs about the same in the policy gradient whatever its volume and price.
    """

    def __init__(
        self,
        cases: list[ProductCase],
        n_envs: int,
        episode_length: int = 104,
        seed: int = 0,
        target_range: float = TARGET_RANGE,
    ) -> None:
        self.target_range = float(target_range)
        rng = np.random.default_rng(seed)
        rows = np.arange(n_envs) % len(cases) if n_envs >= len(cases) else rng.choice(len(cases), n_envs, False)
        self.sim = BatchedInventory(cases, rows, episode_length, seed)
        observation_space = gym.spaces.Box(-CLIP, CLIP, shape=(OBS_DIM,), dtype=np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        super().__init__(n_envs, observation_space, action_space)
        p = self.sim.params
        self.scale = self.sim.profile["mean"] * (p.holding + p.penalty)
        self._actions = np.zeros(n_envs)

    def reset(self) -> np.ndarray:
        self.sim.reset_rows(np.ones(self.num_envs, dtype=bool))
        return self.sim.observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=float).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        orders = order_from_action(self._actions, self.sim.state, self.sim.params, self.sim.profile, self.target_range)
        outcome, ended = self.sim.advance(orders)
        rewards = (-outcome.cost / self.scale).astype(np.float32)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if ended.any():
            final = self.sim.observation()
            for i in np.flatnonzero(ended):
                infos[i] = {"terminal_observation": final[i], "TimeLimit.truncated": True}
            self.sim.reset_rows(ended)
        return self.sim.observation(), rewards, ended.copy(), infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("CatalogueVecEnv has no per-environment methods")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def seed(self, seed: int | None = None) -> list[int | None]:
        self.sim.rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
