"""A global XGBoost forecaster: one gradient-boosted model learned across every series.

Why a global model beside statsforecast's local ones: a local method (ETS, Theta, TSB) sees
one series at a time, so a product with two years of history learns from 104 numbers. A
global model learns the shape of "what the next 13 weeks look like after these 52" from
every window of every product at once (hundreds of thousands of examples for a catalogue of
thousands), which is how the strongest M4 entries and later global models beat the local
ones. On the M4 Weekly holdout it is the best single member of the zoo (bench/RESULTS.md).

How it works (a direct, multi-output model, no recursion within the trained horizon):

- every training example is one origin of one series: the last ``lags`` values as inputs
  (left-padded with NaN when the series is younger; XGBoost learns what missing means) and
  the next ``h`` values as targets; only the ``max_origins`` most recent origins of each
  series are used, which keeps fitting time linear in the number of series;
- each window is divided by its own level (the mean of its last ``level_window`` inputs), so
  one model serves a product selling 3 a week and one selling 3,000; values then go through
  ``log`` (all-positive data, such as M4) or ``log1p`` (demand with zero weeks), which makes
  the squared loss scale-free;
- one XGBoost booster with one output per step (``multi_strategy="one_output_per_tree"``,
  the same as ``h`` independent models sharing one quantised matrix);
- beyond the trained horizon the forecast continues recursively, block by block.

Fitted state is small (one booster), saved in XGBoost's own JSON format with a JSON config
(:meth:`GlobalXGBoost.save_state`) inside the registered router, so serving applies the model
trained offline to the history in the request instead of refitting it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.lib.stride_tricks import sliding_window_view

from training.forecasting.contract import Capabilities, Forecaster, panel_arrays, point_frame


def _levels(inputs: np.ndarray, level_window: int) -> np.ndarray:
    """Per-row scale: mean of the last ``level_window`` inputs, else of all of them, else 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
        recent = np.nanmean(np.abs(inputs[:, -level_window:]), axis=1)
        whole = np.nanmean(np.abs(inputs), axis=1)
    level = np.where(np.isfinite(recent) & (recent > 0), recent, whole)
    return np.where(np.isfinite(level) & (level > 0), level, 1.0)


@dataclass
class GlobalXGBoost(Forecaster):
    """Direct multi-horizon XGBoost over lag windows of many series (see the module docstring).

    ``horizon`` is the trained horizon (one output per step); longer forecasts continue recursively.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(scope="global", native_intervals=False)
    STATE_FORMAT: ClassVar[int] = 1

    alias: str = "XGBoost"
    horizon: int = 13
    freq: str | int = "W-MON"
    lags: int = 52
    level_window: int = 13
    max_origins: int = 300
    min_history: int = 8
    n_estimators: int = 100
    max_depth: int = 6
    learning_rate: float = 0.15
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    # One thread by default: XGBoost's OpenMP threads spin while they wait, and on a small shared
    # machine (2 cores, statsforecast workers or a web service beside it) two threads measured
    # 3.5x slower than one. Scale out with more Airflow workers, or raise it on a dedicated box.
    n_jobs: int = 1
    seed: int = 0
    transform: str = "auto"  # "auto" | "log" | "log1p" | "ratio"
    multi_strategy: str = "one_output_per_tree"  # or "multi_output_tree": one vector-leaf tree per round
    max_bin: int = 64
    booster_: xgb.Booster | None = field(default=None, repr=False)
    h_: int = 0
    transform_: str = ""
    n_examples_: int = 0

    # ------------------------------------------------------------------ transforms

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.transform_ == "log":
            with np.errstate(divide="ignore"):
                return np.log(np.maximum(x, 1e-9))
        if self.transform_ == "log1p":
            return np.log1p(np.maximum(x, 0.0))
        return x

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        if self.transform_ == "log":
            return np.exp(np.clip(z, -50, 50))
        if self.transform_ == "log1p":
            return np.expm1(np.clip(z, -50, 50))
        return z

    # ------------------------------------------------------------------ windows

    def _windows(self, y: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of the most recent origins of one series."""
        n = len(y)
        first, last = self.min_history - 1, n - h - 1
        if last < first:
            return np.empty((0, self.lags)), np.empty((0, h))
        padded = np.concatenate([np.full(self.lags - 1, np.nan), y])
        win = sliding_window_view(padded, self.lags + h)  # row j: inputs end at y[j]
        rows = np.arange(max(first, last - self.max_origins + 1), last + 1)
        block = win[rows]
        return block[:, : self.lags], block[:, self.lags :]

    def _inputs(self, series: list[np.ndarray]) -> np.ndarray:
        """The last ``lags`` values of each series, left-padded with NaN."""
        out = np.full((len(series), self.lags), np.nan)
        for i, y in enumerate(series):
            tail = y[-self.lags :]
            if len(tail):
                out[i, -len(tail) :] = tail
        return out

    # ------------------------------------------------------------------ fit / predict

    # ------------------------------------------------------------------ the forecaster contract

    def fit(self, panel: pd.DataFrame) -> Self:
        """Learn across every series of the long ``panel`` (unique_id, ds, y)."""
        self._panel = panel  # what predict() forecasts from by default; not part of the saved state
        return self.fit_arrays(panel_arrays(panel)[1])

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast every series of ``panel`` (default: the fitted one) with the learnt model; NaN bounds."""
        panel = getattr(self, "_panel", None) if panel is None else panel
        if panel is None:
            raise RuntimeError("GlobalXGBoost.predict needs the history to forecast from (panel=...) or a fit first")
        ids, series, stamps = panel_arrays(panel)
        yhat = self.predict_arrays(series, h)
        return point_frame(ids, np.array([ds[-1] for ds in stamps]), yhat, self.freq, level)

    def params(self) -> dict:
        """The constructor parameters, JSON-able (what the registered model's manifest records)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and not f.name.endswith("_")}

    def save_state(self, folder: Path) -> dict:
        """The booster in XGBoost's JSON format plus what predict needs besides it."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.booster_ is not None:
            self.booster_.save_model(folder / "booster.json")
        state = {
            "format": self.STATE_FORMAT,
            "h_": self.h_,
            "transform_": self.transform_,
            "n_examples_": self.n_examples_,
            "booster": "booster.json" if self.booster_ is not None else None,
        }
        (folder / "state.json").write_text(json.dumps(state, indent=2))
        return state  # fmt: skip

    def load_state(self, folder: Path, state: dict) -> Self:
        if state.get("format") != self.STATE_FORMAT:
            raise ValueError(
                f"GlobalXGBoost state format {state.get('format')!r} is not supported; this version reads "
                f"{self.STATE_FORMAT}"
            )
        self.h_, self.transform_, self.n_examples_ = int(state["h_"]), str(state["transform_"]), state["n_examples_"]
        self.booster_ = None
        if state.get("booster"):
            self.booster_ = xgb.Booster()
            self.booster_.load_model(folder / state["booster"])
        return self

    # ------------------------------------------------------------------ arrays

    def fit_arrays(self, series: list[np.ndarray]) -> Self:
        """Learn from every recent origin of every series (each a 1-D array in time order)."""
        h = self.horizon
        parts = [self._windows(np.asarray(y, dtype=float), h) for y in series]
        x = np.vstack([p[0] for p in parts]) if parts else np.empty((0, self.lags))
        t = np.vstack([p[1] for p in parts]) if parts else np.empty((0, h))
        self.h_ = h
        if self.transform == "auto":
            values = np.concatenate([np.asarray(y, dtype=float) for y in series]) if series else np.ones(1)
            self.transform_ = "log" if (values > 0).all() else "log1p" if (values >= 0).all() else "ratio"
        else:
            self.transform_ = self.transform
        self.n_examples_ = len(x)
        if len(x) < 2:
            self.booster_ = None  # too little history to learn from: predict() falls back to the level
            return self
        level = _levels(x, self.level_window)[:, None]
        dtrain = xgb.QuantileDMatrix(self._forward(x / level), label=self._forward(t / level), max_bin=self.max_bin)
        params = {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "multi_strategy": self.multi_strategy,
            "max_bin": self.max_bin,
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "seed": self.seed,
            "verbosity": 0,
        }
        if self.n_jobs and self.n_jobs > 0:  # -1 / None: XGBoost's default, every core
            params["nthread"] = self.n_jobs
        self.booster_ = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        return self

    def _block(self, x: np.ndarray) -> np.ndarray:
        """One trained-horizon block of forecasts for input windows ``x``."""
        level = _levels(x, self.level_window)[:, None]
        if self.booster_ is None:  # nothing was learnt: carry the recent level forward (0 without history)
            seen = ~np.isnan(x).all(axis=1)
            return np.repeat(np.where(seen[:, None], level, 0.0), self.h_, axis=1)
        z = self.booster_.inplace_predict(self._forward(x / level))
        return self._inverse(np.asarray(z).reshape(len(x), -1)) * level

    def predict_arrays(self, series: list[np.ndarray], h: int) -> np.ndarray:
        """Forecasts (one row per series, ``h`` columns) from the end of each series."""
        if not self.h_:
            raise RuntimeError("GlobalXGBoost.predict called before fit")
        x = self._inputs([np.asarray(y, dtype=float) for y in series])
        out = np.empty((len(series), 0))
        while out.shape[1] < h:
            block = self._block(x)
            out = np.hstack([out, block])
            x = np.hstack([x, block])[:, -self.lags :]
        return out[:, :h]
