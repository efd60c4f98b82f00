"""A uniform wrapper over statsforecast: the statistical model zoo.

Every method is a statsforecast model, so the whole zoo runs in one vectorised, parallel
``StatsForecast`` call over the long demand frame (unique_id, ds, y), and the same code
scales out through statsforecast's Spark/Dask back-ends.

Two small additions to statsforecast:
- ``SeasonallyAdjusted`` applies M4's benchmark protocol: test for seasonality (90 %
  autocorrelation test at the seasonal lag), remove it by classical multiplicative
  decomposition, fit the base model, re-seasonalise. Naive2, SES, Holt and Damped are
  defined this way in M4, so our figures are comparable with the published ones.
- ``PointOnly`` lets models without native intervals (Croston family, TSB, ADIDA, IMAPA)
  sit in the same call as models that have them: asked for intervals, they return NaN
  bounds instead of raising.

Global members (family ``"global"``, today :class:`~training.forecasting.global_xgb.GlobalXGBoost`)
are not statsforecast models: one model is learned across all the series given, then applied
to each. ``ModelZoo`` runs them beside the statsforecast call and returns the same long frame;
in ``cross_validation`` they are refitted at every origin on the data before it, so the
backtest stays honest. A fitted global model is kept in ``ModelZoo.fitted`` so the router can
carry it to serving instead of refitting on one request's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import (
    _TS,
    ADIDA,
    IMAPA,
    TSB,
    AutoARIMA,
    AutoETS,
    AutoTheta,
    CrostonOptimized,
    CrostonSBA,
    Holt,
    Naive,
    SeasonalNaive,
    SimpleExponentialSmoothingOptimized,
    Theta,
)

from training.forecasting.global_xgb import GlobalXGBoost

LEVELS = (80, 95)


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


@dataclass(frozen=True)
class MethodSpec:
    name: str
    build: Callable[..., _TS]  # build(season_length, **params)
    intervals: bool
    family: str  # "baseline", "smoothing", "arima", "intermittent", "global"
    params: tuple[str, ...] = ()  # hyper-parameters ``build`` takes as keywords (see ModelZoo.params)


def _sa(base: _TS, m: int, alias: str) -> _TS:
    return SeasonallyAdjusted(base, m, alias) if m > 1 else _alias(base, alias)


def _alias(model: _TS, alias: str) -> _TS:
    model.alias = alias
    return model


METHODS: dict[str, MethodSpec] = {
    s.name: s
    for s in [
        MethodSpec("Naive", lambda m: Naive(), True, "baseline"),
        MethodSpec("Naive2", lambda m: _sa(Naive(), m, "Naive2"), True, "baseline"),
        MethodSpec("SeasonalNaive", lambda m: SeasonalNaive(season_length=m), True, "baseline"),
        MethodSpec(
            "SES", lambda m: _sa(PointOnly(SimpleExponentialSmoothingOptimized()), m, "SES"), False, "smoothing"
        ),
        MethodSpec("Holt", lambda m: _sa(Holt(), m, "Holt"), True, "smoothing"),
        MethodSpec("Damped", lambda m: _sa(AutoETS(model="AAN", damped=True), m, "Damped"), True, "smoothing"),
        MethodSpec("Theta", lambda m: Theta(season_length=m), True, "smoothing"),
        MethodSpec("AutoTheta", lambda m: AutoTheta(season_length=m), True, "smoothing"),
        # ETS supports seasonal periods up to 24: weekly data gets a non-seasonal ETS on the
        # seasonally adjusted series (the same protocol as SES/Holt/Damped).
        MethodSpec(
            "AutoETS",
            lambda m: _sa(AutoETS(season_length=1), m, "AutoETS") if m > 24 else AutoETS(season_length=m),
            True,
            "smoothing",
        ),
        # Seasonal ARIMA with m = 52 takes minutes per series; past 24 the seasonal part is
        # removed by decomposition instead (Hyndman's advice for long periods), as for ETS.
        MethodSpec(
            "AutoARIMA",
            lambda m: _sa(AutoARIMA(season_length=1), m, "AutoARIMA") if m > 24 else AutoARIMA(season_length=m),
            True,
            "arima",
        ),
        MethodSpec("CrostonOptimized", lambda m: PointOnly(CrostonOptimized()), False, "intermittent"),
        MethodSpec("CrostonSBA", lambda m: PointOnly(CrostonSBA()), False, "intermittent"),
        MethodSpec(
            "TSB",
            lambda m, alpha_d=0.2, alpha_p=0.2: PointOnly(TSB(alpha_d=alpha_d, alpha_p=alpha_p)),
            False,
            "intermittent",
            ("alpha_d", "alpha_p"),
        ),
        MethodSpec("ADIDA", lambda m: PointOnly(ADIDA()), False, "intermittent"),
        MethodSpec("IMAPA", lambda m: PointOnly(IMAPA()), False, "intermittent"),
        MethodSpec(
            "XGBoost",
            lambda m, **kw: GlobalXGBoost(**kw),
            False,
            "global",
            (
                "lags",
                "max_origins",
                "n_estimators",
                "max_depth",
                "learning_rate",
                "subsample",
                "colsample_bytree",
                "multi_strategy",
                "max_bin",
                "n_jobs",
            ),
        ),
    ]
}
DEFAULT_METHODS = tuple(METHODS)


def resolve_methods(names: list[str] | tuple[str, ...] | None) -> list[str]:
    names = list(names or DEFAULT_METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    return names


@dataclass
class ModelZoo:
    """Forecast many series with many methods in one parallel statsforecast run.

    ``clip_negative`` floors forecasts and bounds at zero (demand cannot be negative);
    the M4 benchmark turns it off. ``params`` overrides the hyper-parameters of the methods
    that have them, e.g. ``{"TSB": {"alpha_d": 0.1, "alpha_p": 0.05}}`` (tuned by
    ``training.automl.tune_zoo``); a method without an entry keeps its defaults.
    """

    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    season_length: int = 52
    freq: str = "W-MON"
    n_jobs: int = -1
    clip_negative: bool = True
    params: dict[str, dict] = field(default_factory=dict)
    fitted: dict[str, GlobalXGBoost] = field(default_factory=dict)  # global members already fitted

    def __post_init__(self) -> None:
        self.methods = resolve_methods(self.methods)
        for name, kwargs in self.params.items():
            accepted = METHODS[resolve_methods([name])[0]].params
            unknown = sorted(set(kwargs) - set(accepted))
            if unknown:
                raise ValueError(f"{name} takes no parameter(s) {unknown}; tunable: {list(accepted)}")

    @property
    def local_methods(self) -> list[str]:
        return [m for m in self.methods if METHODS[m].family != "global"]

    @property
    def global_methods(self) -> list[str]:
        return [m for m in self.methods if METHODS[m].family == "global"]

    def _statsforecast(self) -> StatsForecast:
        names = self.local_methods
        models = [METHODS[name].build(self.season_length, **self.params.get(name, {})) for name in names]
        for name, model in zip(names, models, strict=True):
            model.alias = name
        return StatsForecast(models=models, freq=self.freq, n_jobs=self.n_jobs, fallback_model=Naive())

    def _global_model(self, name: str) -> GlobalXGBoost:
        return METHODS[name].build(self.season_length, **self.params.get(name, {}))

    def _future_ds(self, last: pd.Series, h: int) -> np.ndarray:
        """The ``h`` time stamps after each series' last one (integer index or calendar ``freq``)."""
        steps = np.arange(1, h + 1)
        if pd.api.types.is_integer_dtype(last) or isinstance(self.freq, int):
            every = self.freq if isinstance(self.freq, int) else 1
            return (last.to_numpy()[:, None] + steps[None, :] * every).ravel()
        offset = pd.tseries.frequencies.to_offset(self.freq)
        idx = pd.DatetimeIndex(last)
        return np.column_stack([(idx + k * offset).to_numpy() for k in steps]).ravel()

    def _global_forecast(self, demand: pd.DataFrame, h: int) -> pd.DataFrame:
        """Forecasts of the global members: fitted on ``demand`` unless already in ``self.fitted``."""
        ids, series, stamps = _panel(demand)
        last = pd.Series([ds[-1] for ds in stamps])
        frames = []
        for name in self.global_methods:
            model = self.fitted.get(name)
            if model is None:
                model = self.fitted[name] = self._global_model(name).fit(series, h)
            yhat = model.predict(series, h)
            frames.append(
                pd.DataFrame(
                    {"unique_id": np.repeat(ids, h), "ds": self._future_ds(last, h), "method": name,
                     "yhat": yhat.ravel()}
                )
            )  # fmt: skip
        return self._finish(pd.concat(frames, ignore_index=True))

    def _global_cross_validation(self, demand: pd.DataFrame, h: int, n_windows: int, step: int) -> pd.DataFrame:
        """Rolling origins of the global members, refitted at each origin on the data before it.

        Origins are positional per series (the last ``h + step * (n_windows - 1)`` values are
        forecast), exactly as statsforecast places them, so both parts line up on ``cutoff``.
        """
        ids, ys, stamps = _panel(demand)
        frames = []
        for w in range(n_windows):
            back = h + step * (n_windows - 1 - w)  # values after the cutoff, to the end of the series
            train = [y[: len(y) - back] for y in ys]
            after = [slice(len(y) - back, len(y) - back + h) for y in ys]
            actual = {
                "unique_id": np.repeat(ids, h),
                "ds": np.concatenate([ds[sl] for ds, sl in zip(stamps, after, strict=True)]),
                "cutoff": np.repeat([ds[sl.start - 1] for ds, sl in zip(stamps, after, strict=True)], h),
                "y": np.concatenate([y[sl] for y, sl in zip(ys, after, strict=True)]),
            }
            for name in self.global_methods:
                yhat = self._global_model(name).fit(train, h).predict(train, h)
                frames.append(pd.DataFrame({**actual, "method": name, "yhat": yhat.ravel()}))
        return self._finish(pd.concat(frames, ignore_index=True))

    def _finish(self, out: pd.DataFrame) -> pd.DataFrame:
        """Global members have no native intervals: NaN bounds (filled from backtest errors later)."""
        for lv in LEVELS:
            out[f"lo{lv}"] = np.nan
            out[f"hi{lv}"] = np.nan
        if self.clip_negative:
            out["yhat"] = out["yhat"].clip(lower=0)
        return out

    def _tidy(self, wide: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
        """Wide statsforecast output → long: one row per (series, ds, method)."""
        frames = []
        for name in self.local_methods:
            part = wide[keep].copy()
            part["method"] = name
            part["yhat"] = wide[name].to_numpy(dtype=float)
            for lv in LEVELS:
                lo, hi = f"{name}-lo-{lv}", f"{name}-hi-{lv}"
                part[f"lo{lv}"] = wide[lo].to_numpy(dtype=float) if lo in wide else np.nan
                part[f"hi{lv}"] = wide[hi].to_numpy(dtype=float) if hi in wide else np.nan
            frames.append(part)
        out = pd.concat(frames, ignore_index=True)
        if self.clip_negative:
            cols = ["yhat"] + [f"{b}{lv}" for lv in LEVELS for b in ("lo", "hi")]
            out[cols] = out[cols].clip(lower=0)
        return out

    def forecast(self, demand: pd.DataFrame, h: int, intervals: bool = True) -> pd.DataFrame:
        """Forecasts of every method: unique_id, ds, method, yhat, lo80, hi80, lo95, hi95."""
        parts = []
        if self.local_methods:
            sf = self._statsforecast()
            wide = sf.forecast(df=demand, h=h, level=list(LEVELS) if intervals else None)
            parts.append(self._tidy(wide, ["unique_id", "ds"]))
        if self.global_methods:
            parts.append(self._global_forecast(demand, h))
        return _stack(parts)

    def cross_validation(
        self, demand: pd.DataFrame, h: int, n_windows: int, step_size: int | None = None, intervals: bool = False
    ) -> pd.DataFrame:
        """Rolling-origin forecasts: unique_id, ds, cutoff, y, method, yhat, bounds."""
        parts = []
        if self.local_methods:
            sf = self._statsforecast()
            wide = sf.cross_validation(
                df=demand, h=h, n_windows=n_windows, step_size=step_size or h, level=list(LEVELS) if intervals else None
            )
            parts.append(self._tidy(wide, ["unique_id", "ds", "cutoff", "y"]))
        if self.global_methods:
            parts.append(self._global_cross_validation(demand, h, n_windows, step_size or h))
        return _stack(parts)


def _panel(demand: pd.DataFrame) -> tuple[list, list[np.ndarray], list[np.ndarray]]:
    """(ids, values, time stamps) of each series of a long frame, in time order."""
    groups = demand.sort_values(["unique_id", "ds"], kind="stable").groupby("unique_id", sort=False, observed=True)
    values = [g.to_numpy(dtype=float) for _, g in groups["y"]]
    return list(groups.groups), values, [g.to_numpy() for _, g in groups["ds"]]


def _stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate local and global parts with the statsforecast part's column order and dtypes."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    rest = [p[first.columns].astype({c: first[c].dtype for c in ("unique_id", "ds") if c in first}) for p in parts[1:]]
    return pd.concat([first, *rest], ignore_index=True)
