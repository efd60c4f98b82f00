"""The one forecaster contract every member of the zoo follows, whatever its kind.

Shaped like statsforecast's models and scikit-learn's estimators:

- an ``alias`` (the method's name in every table: backtests, router weights, reports);
- ``fit(panel) -> self`` on the long demand contract (``unique_id``, ``ds``, ``y``);
- ``predict(h, level=(), panel=None)`` → the long contract again: ``unique_id``, ``ds``, ``yhat``
  and ``lo<level>``/``hi<level>`` per requested level (NaN where the member has no native
  intervals). ``panel`` is the history to forecast from: a global member applies what it learnt
  in ``fit`` to it, a per-series member estimates its parameters on it (that is what fitting a
  local model means). Without ``panel``, the member forecasts from the end of what it was fitted on;
- declared :class:`Capabilities`, which the zoo, the backtest, the router and the registry read
  instead of asking what kind of member they hold;
- ``save_state(folder) -> dict`` / ``load_state(folder, state)``: fitted state in its library's own
  format (XGBoost JSON, torch ``state_dict``), never a pickle of our classes, for members whose
  fitted state is carried into the registered model (``Capabilities.carries_state``).

Nothing happens in ``__init__`` beyond storing parameters (scikit-learn's rule), so building a
member is free and its parameters are plain attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import pandas as pd

LEVELS = (80, 95)
Refit = Literal["every_origin", "every_k", "never"]


@dataclass(frozen=True)
class Capabilities:
    """What a member can do, declared once so that callers never branch on its kind.

    ``fits``: it learns something from data (False for a zero-shot foundation model).
    ``scope``: ``"global"`` learns one model across every series; ``"local"`` fits each series on its own.
    ``native_intervals``: it returns its own lo/hi bounds (else the backtest's empirical ones are used).
    ``refit``: in backtests, refit at every origin, every ``refit_every`` origins, or never.
    ``exogenous``: it takes external regressors (none of today's members do).
    """

    fits: bool = True
    scope: Literal["local", "global"] = "local"
    native_intervals: bool = False
    refit: Refit = "every_origin"
    refit_every: int = 1
    exogenous: bool = False

    def refits_at(self, origin: int) -> bool:
        """Whether the backtest refits at its ``origin``-th origin (0 = the first, where a model that
        learns is always fitted; "never" means never again, and nothing at all for a zero-shot model)."""
        if not self.fits:
            return False
        if self.refit == "every_k":
            return origin % max(1, self.refit_every) == 0
        return self.refit == "every_origin" or origin == 0

    @property
    def carries_state(self) -> bool:
        """A global member that learns is fitted once offline and carried to serving; a local one
        is refitted on each request's history, so it has nothing to carry."""
        return self.fits and self.scope == "global"


@dataclass(frozen=True)
class Setup:
    """What every member is built with, beside its own hyper-parameters."""

    season_length: int = 52
    horizon: int = 13
    freq: str | int = "W-MON"


class Forecaster(ABC):
    """Base class of the contract (see the module docstring). Subclasses set ``capabilities``."""

    capabilities: Capabilities = Capabilities()  # a class may declare it, or an instance set its own
    alias: str = ""
    freq: str | int = "W-MON"

    @abstractmethod
    def fit(self, panel: pd.DataFrame) -> Self: ...

    @abstractmethod
    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame: ...

    def save_state(self, folder: Path) -> dict:
        """Write fitted state under ``folder``; return the JSON-able config that ``load_state`` reads."""
        return {}

    def load_state(self, folder: Path, state: dict) -> Self:
        return self

    def cross_validation(
        self, panel: pd.DataFrame, h: int, n_windows: int, step_size: int, level: Sequence[int] = ()
    ) -> pd.DataFrame:
        """Rolling-origin forecasts (``unique_id, ds, cutoff, y, yhat`` and bounds), honest by construction.

        Origins are positional per series (the last ``h + step_size * (n_windows - 1)`` values are
        forecast), exactly as statsforecast places them, so members of every kind line up on
        ``cutoff``. The member is refitted on the data before each origin as its ``refit`` policy
        says; it then forecasts from that data.
        """
        ids, ys, stamps = panel_arrays(panel)
        caps = self.capabilities
        frames = []
        for w in range(n_windows):
            back = h + step_size * (n_windows - 1 - w)  # values after the cutoff, to the end of the series
            keep = [len(y) - back for y in ys]
            train = _slice_panel(ids, ys, stamps, keep)
            if caps.refits_at(w):
                self.fit(train)
            fc = self.predict(h, level, panel=train)
            after = [slice(k, k + h) for k in keep]
            frames.append(
                fc.assign(
                    cutoff=np.repeat([ds[k - 1] for ds, k in zip(stamps, keep, strict=True)], h),
                    y=np.concatenate([y[sl] for y, sl in zip(ys, after, strict=True)]),
                )
            )
        out = pd.concat(frames, ignore_index=True)
        first = ["unique_id", "ds", "cutoff", "y"]
        return out[first + [c for c in out.columns if c not in first]]


def panel_arrays(panel: pd.DataFrame) -> tuple[list, list[np.ndarray], list[np.ndarray]]:
    """(ids, values, time stamps) of each series of a long frame, in time order."""
    groups = panel.sort_values(["unique_id", "ds"], kind="stable").groupby("unique_id", sort=False, observed=True)
    values = [g.to_numpy(dtype=float) for _, g in groups["y"]]
    return list(groups.groups), values, [g.to_numpy() for _, g in groups["ds"]]


def _slice_panel(ids: list, ys: list[np.ndarray], stamps: list[np.ndarray], keep: list[int]) -> pd.DataFrame:
    """The first ``keep[i]`` values of each series, as a long frame."""
    return pd.DataFrame(
        {
            "unique_id": np.repeat(ids, keep),
            "ds": np.concatenate([ds[:k] for ds, k in zip(stamps, keep, strict=True)]),
            "y": np.concatenate([y[:k] for y, k in zip(ys, keep, strict=True)]),
        }
    )


def future_ds(last: np.ndarray | pd.Series, h: int, freq: str | int) -> np.ndarray:
    """The ``h`` time stamps after each series' last one (integer index or calendar ``freq``), flattened."""
    last = pd.Series(last)
    steps = np.arange(1, h + 1)
    if pd.api.types.is_integer_dtype(last) or isinstance(freq, int):
        every = freq if isinstance(freq, int) else 1
        return (last.to_numpy()[:, None] + steps[None, :] * every).ravel()
    offset = pd.tseries.frequencies.to_offset(freq)
    idx = pd.DatetimeIndex(last)
    return np.column_stack([(idx + k * offset).to_numpy() for k in steps]).ravel()


def point_frame(ids: list, last: np.ndarray, yhat: np.ndarray, freq: str | int, level: Sequence[int]) -> pd.DataFrame:
    """The long contract for a member with point forecasts only: NaN bounds at every requested level."""
    h = yhat.shape[1]
    out = pd.DataFrame({"unique_id": np.repeat(ids, h), "ds": future_ds(last, h, freq), "yhat": yhat.ravel()})
    for lv in level:
        out[f"lo{lv}"] = np.nan
        out[f"hi{lv}"] = np.nan
    return out
