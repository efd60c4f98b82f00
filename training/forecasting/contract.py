"""The one forecaster contract every member of the zoo follows, whatever its kind.

Shaped like statsforecast's models and scikit-learn's estimators:

- an ``alias`` (the method's name in every table: backtests, router weights, reports);
- ``fit(panel) -> self`` on the long demand contract (``unique_id``, ``ds``, ``y``);
- ``predict(h, level=(), panel=None)`` → the long contract again: ``unique_id``, ``ds``, ``yhat``
  and ``lo<level>``/``hi<level>`` per requested level (NaN where the member has no native
  intervals). ``panel`` is the history to forecast from: a global member applies what it learnt
  in ``fit`` to it, a per-series member estimates its parameters on it (that is what fitting a
  local model means). Without ``panel``, the member forecasts from the end of what it was fitted on;
- a member that declares ``Capabilities.exogenous`` takes external regressors: ``fit(panel)`` where
  ``panel`` carries regressor columns beside ``y`` (``unit_price``, ``on_promotion``), and
  ``predict(h, level, panel=None, future=None)`` where ``future`` is a long frame
  ``unique_id, ds, <regressors>`` holding the regressors' values over the horizon (what
  :func:`fill_future` completes: values missing there are the series' last known ones). The
  zoo passes regressors to such members only; every other member sees ``unique_id, ds, y``;
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
    ``exogenous``: it takes external regressors (extra columns of ``panel``, ``future`` in ``predict``).
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

        Regressors (a member with ``exogenous``, ``panel`` with regressor columns): the history before
        each origin carries them, and the horizon's values are passed as ``future``. That is honest
        for regressors known ahead, as planned prices and promotions are (a business decides them
        before the weeks they run); a regressor only known afterwards must not be given this way.
        """
        ids, ys, stamps = panel_arrays(panel)
        caps = self.capabilities
        extra = regressor_columns(panel) if caps.exogenous else []
        ordered = panel.sort_values(["unique_id", "ds"], kind="stable") if extra else None
        frames = []
        for w in range(n_windows):
            back = h + step_size * (n_windows - 1 - w)  # values after the cutoff, to the end of the series
            keep = [len(y) - back for y in ys]
            train = _slice_panel(ids, ys, stamps, keep)
            kwargs = {}
            if extra:
                pos = ordered.groupby("unique_id", sort=False, observed=True).cumcount().to_numpy()
                cut = ordered["unique_id"].map(dict(zip(ids, keep, strict=True))).to_numpy()
                train = train.assign(**{c: ordered.loc[pos < cut, c].to_numpy() for c in extra})
                horizon = (pos >= cut) & (pos < cut + h)
                kwargs["future"] = ordered.loc[horizon, ["unique_id", "ds", *extra]].reset_index(drop=True)
            if caps.refits_at(w):
                self.fit(train)
            fc = self.predict(h, level, panel=train, **kwargs)
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


CORE_COLUMNS = ("unique_id", "ds", "y")


def regressor_columns(frame: pd.DataFrame | None) -> list[str]:
    """The columns of a long frame beyond ``unique_id, ds, y`` (and a backtest's ``cutoff``): its regressors."""
    if frame is None:
        return []
    return [c for c in frame.columns if c not in CORE_COLUMNS and c != "cutoff"]


def core_panel(panel: pd.DataFrame | None) -> pd.DataFrame | None:
    """``unique_id, ds, y`` only: what a member without regressors is given (the frame itself if nothing else)."""
    if panel is None or not regressor_columns(panel):
        return panel
    return panel[list(CORE_COLUMNS)]


def with_regressors(panel: pd.DataFrame, regressors: pd.DataFrame | None) -> pd.DataFrame:
    """``panel`` with the weekly regressors' columns joined on (unique_id, ds).

    Weeks without a row take the series' previous known value (then its next one, for weeks
    before the table starts); series without any row keep NaN, which members treat as no
    regressor. Without ``regressors`` the panel comes back as it is.
    """
    if regressors is None or regressors.empty:
        return panel
    cols = [c for c in regressor_columns(regressors) if c not in panel.columns]
    if not cols:
        return panel
    right = regressors[["unique_id", "ds", *cols]].astype({"unique_id": panel["unique_id"].dtype}, errors="ignore")
    out = panel.merge(right, on=["unique_id", "ds"], how="left").sort_values(["unique_id", "ds"], kind="stable")
    out[cols] = out.groupby("unique_id", sort=False, observed=True)[cols].transform(lambda s: s.ffill().bfill())
    return out.reset_index(drop=True)


def fill_future(history: pd.DataFrame, h: int, freq: str | int, future: pd.DataFrame | None = None) -> pd.DataFrame:
    """The regressors over each series' next ``h`` steps: ``unique_id, ds, <regressors>``.

    Values come from ``future`` (any long frame of regressor values, planned ones included: a
    weekly regressor table that runs past the history will do) where it has the step, else the
    series' last known value (in ``history``, else in ``future`` up to the history's end): a price
    stays as it was, and so does the promotion flag, so a series whose last week was on promotion
    stays on it unless ``future`` says otherwise. Columns are ``history``'s regressors, plus ``future``'s.
    """
    cols = list(dict.fromkeys([*regressor_columns(history), *regressor_columns(future)]))
    ids, _, stamps = panel_arrays(history)
    last_ds = np.array([ds[-1] for ds in stamps])
    out = pd.DataFrame({"unique_id": np.repeat(ids, h), "ds": future_ds(last_ds, h, freq)})
    if not cols:
        return out
    if future is not None and regressor_columns(future):
        given = [c for c in cols if c in future.columns]
        right = future[["unique_id", "ds", *given]].drop_duplicates(["unique_id", "ds"], keep="last")
        out = out.merge(right.astype({"unique_id": out["unique_id"].dtype}, errors="ignore"), on=["unique_id", "ds"],
                        how="left")  # fmt: skip
    before = None
    if future is not None and len(future):
        ends = pd.Series(last_ds, index=ids)
        f = future[future["ds"] <= future["unique_id"].map(ends)]
        before = f.sort_values(["unique_id", "ds"], kind="stable").groupby("unique_id", observed=True).last()
    hist = history.sort_values(["unique_id", "ds"], kind="stable").groupby("unique_id", observed=True).last()
    for c in cols:
        fallback = pd.Series(np.nan, index=out.index)
        if c in hist:
            fallback = out["unique_id"].map(hist[c])
        if before is not None and c in before:
            fallback = fallback.fillna(out["unique_id"].map(before[c]))
        out[c] = (out[c] if c in out else pd.Series(np.nan, index=out.index)).astype(float).fillna(fallback)
    return out


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
