"""The statistical (per-series) members: statsforecast models behind the one forecaster contract.

Every statistical member is a statsforecast model, so the zoo can run them all in one vectorised,
parallel ``StatsForecast`` call over the long demand frame (:class:`StatsForecastMember` exposes its
model for that), and the same code scales out through statsforecast's Spark/Dask back-ends.

Two small additions to statsforecast:
- ``SeasonallyAdjusted`` applies M4's benchmark protocol: test for seasonality (90 %
  autocorrelation test at the seasonal lag), remove it by classical multiplicative
  decomposition, fit the base model, re-seasonalise. Naive2, SES, Holt and Damped are
  defined this way in M4, so our figures are comparable with the published ones.
- ``PointOnly`` lets models without native intervals (Croston family, TSB, ADIDA, IMAPA)
  sit in the same call as models that have them: asked for intervals, they return NaN
  bounds instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Self

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import _TS, Naive

from training.forecasting.contract import Capabilities, Forecaster, Setup


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """M4's seasonality test: autocorrelation at lag m beyond the 90 % limit (Bartlett)."""
    n = len(y)
    if m <= 1 or n < 3 * m:
        return False
    x = y - y.mean()
    denom = float(np.sum(x**2))
    if denom == 0:
        return False
    acf = np.array([np.sum(x[k:] * x[: n - k]) / denom for k in range(1, m + 1)])
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(acf[: m - 1] ** 2)) / n)
    return bool(abs(acf[m - 1]) > limit)


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition indices (one per position in the cycle)."""
    n = len(y)
    kernel = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    trend = np.convolve(y, kernel, mode="valid")
    offset = (len(kernel) - 1) // 2
    ratio = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio[offset : offset + len(trend)] = y[offset : offset + len(trend)] / trend
    idx = np.array([np.nanmean(ratio[i::m]) if np.isfinite(ratio[i::m]).any() else 1.0 for i in range(m)])
    idx = np.where(np.isfinite(idx) & (idx > 0), idx, 1.0)
    return idx * m / idx.sum()


class _Wrapper(_TS):
    """A statsforecast model that delegates to ``self.base`` through ``forecast``."""

    base: _TS

    def fit(self, y, X=None):
        self._y = np.asarray(y, dtype=float)
        return self

    def predict(self, h, X=None, level=None):
        return self.forecast(self._y, h, level=level)

    def new(self):
        b = super().new()
        b.base = self.base.new()
        return b


class SeasonallyAdjusted(_Wrapper):
    """Fit ``base`` on the seasonally adjusted series when the M4 test finds seasonality."""

    def __init__(self, base: _TS, season_length: int, alias: str) -> None:
        self.base = base
        self.season_length = season_length
        self.alias = alias
        self.prediction_intervals = None

    def _decompose(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, n = self.season_length, len(y)
        if not (np.all(y > 0) or (y.min() >= 0 and y.mean() > 0)) or not seasonality_test(y, m):
            return np.ones(n), np.ones(m)
        idx = seasonal_indices(y, m)
        return idx[np.arange(n) % m], idx

    def forecast(self, y, h, X=None, X_future=None, level=None, fitted=False):
        y = np.asarray(y, dtype=float)
        insample, idx = self._decompose(y)
        res = self.base.new().forecast(y=y / insample, h=h, level=level, fitted=fitted)
        future = idx[(len(y) + np.arange(h)) % self.season_length]
        out = {
            k: (v * future if k != "fitted" and not k.startswith("fitted-") else v * insample) for k, v in res.items()
        }
        return out


class PointOnly(_Wrapper):
    """Wrap a model that has no native intervals; requested bounds come back as NaN."""

    def __init__(self, base: _TS) -> None:
        self.base = base
        self.alias = base.alias
        self.prediction_intervals = None

    def forecast(self, y, h, X=None, X_future=None, level=None, fitted=False):
        res = self.base.new().forecast(y=y, h=h, fitted=fitted)
        for lv in level or []:
            res[f"lo-{lv}"] = np.full(h, np.nan)
            res[f"hi-{lv}"] = np.full(h, np.nan)
        return res


class StatsForecastMember(Forecaster):
    """One statsforecast model as a zoo member: fitted per series, on whatever history it is given.

    ``fit`` records the panel (a local model's parameters belong to each series, so they are
    estimated where the forecast is made); ``predict`` runs statsforecast on it, or on ``panel``.
    The zoo batches every such member into one ``StatsForecast`` call through ``statsforecast_model``.
    """

    def __init__(self, alias: str, build: Callable[[], _TS], native_intervals: bool, setup: Setup, n_jobs: int = 1):
        self.alias = alias
        self.build = build
        self.native_intervals = native_intervals
        self.freq = setup.freq
        self.n_jobs = n_jobs
        self.capabilities = Capabilities(scope="local", native_intervals=native_intervals)
        self.panel_: pd.DataFrame | None = None

    def statsforecast_model(self) -> _TS:
        model = self.build()
        model.alias = self.alias
        return model

    def _sf(self) -> StatsForecast:
        return batched_statsforecast([self], self.freq, self.n_jobs)

    def fit(self, panel: pd.DataFrame) -> Self:
        self.panel_ = panel
        return self

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        data = self.panel_ if panel is None else panel
        if data is None:
            raise RuntimeError(f"{self.alias}: predict needs a panel (or fit first)")
        wide = self._sf().forecast(df=data, h=h, level=list(level) or None)
        return tidy(wide, [self.alias], ["unique_id", "ds"], level)[0].drop(columns="method")

    def cross_validation(
        self, panel: pd.DataFrame, h: int, n_windows: int, step_size: int, level: Sequence[int] = ()
    ) -> pd.DataFrame:
        wide = self._sf().cross_validation(df=panel, h=h, n_windows=n_windows, step_size=step_size,
                                           level=list(level) or None)  # fmt: skip
        return tidy(wide, [self.alias], ["unique_id", "ds", "cutoff", "y"], level)[0].drop(columns="method")


def tidy(wide: pd.DataFrame, aliases: list[str], keep: list[str], level: Sequence[int]) -> list[pd.DataFrame]:
    """Wide statsforecast output → one long frame per alias: ``keep`` columns, method, yhat, lo/hi."""
    frames = []
    for name in aliases:
        part = wide[keep].copy()
        part["method"] = name
        part["yhat"] = wide[name].to_numpy(dtype=float)
        for lv in level:
            lo, hi = f"{name}-lo-{lv}", f"{name}-hi-{lv}"
            part[f"lo{lv}"] = wide[lo].to_numpy(dtype=float) if lo in wide else np.nan
            part[f"hi{lv}"] = wide[hi].to_numpy(dtype=float) if hi in wide else np.nan
        frames.append(part.reset_index(drop=True))
    return frames


def batched_statsforecast(members: list[StatsForecastMember], freq: str | int, n_jobs: int) -> StatsForecast:
    """One StatsForecast call for many statistical members (one pass over the data, one worker pool)."""
    return StatsForecast(models=[m.statsforecast_model() for m in members], freq=freq, n_jobs=n_jobs,
                         fallback_model=Naive())  # fmt: skip
