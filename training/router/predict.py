"""The router at forecast time: history in, routed forecasts with intervals and reasons out.

This is the object the MLflow pyfunc ``stockml-router`` wraps and the pipeline calls, so the
registry, the batch pipeline and the HTTP service all forecast through the same code.
Per-series members are fitted on the history given at call time (they are cheap and must see
the latest weeks); the router's meta-model, the interval quantiles and the members that carry
fitted state (global ones, such as the XGBoost forecaster learned across the whole catalogue) are
learned offline and carried here in a fitted :class:`~training.forecasting.zoo.ModelZoo`, so a
request with one SKU's history is forecast by the model trained on every SKU. The model is saved
as data, not as a pickle: :mod:`training.router.storage`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.data.weekly import fill_weeks, week_start
from training.forecasting.backtest import add_empirical_intervals
from training.forecasting.metrics import insample_scales
from training.forecasting.statistical import StatsForecastMember
from training.forecasting.zoo import ModelZoo
from training.router.model import ForecastRouter
from training.router.train import ROUTER, BlendPolicy, PatternRule, combine, router_features

OUTPUT_COLUMNS = [
    "unique_id", "ds", "step", "yhat", "lo80", "hi80", "lo95", "hi95",
    "method", "weights", "confidence", "pattern", "explanation",
]  # fmt: skip


class HistoryError(ValueError):
    """The history given to the router cannot be forecast; the message names the problem."""


def regularise(history: pd.DataFrame, min_weeks: int = 2) -> pd.DataFrame:
    """Validate a (unique_id, ds, y) frame and put it on the weekly W-MON grid, gaps as zero weeks.

    ``min_weeks``: the fewest weeks a series may cover (the members need 2; features and classes 1)."""
    missing = [c for c in ("unique_id", "ds", "y") if c not in history.columns]
    if missing:
        raise HistoryError(f"history is missing column(s) {missing}; expected unique_id, ds, y")
    h = history[["unique_id", "ds", "y"]].copy()
    h["unique_id"] = h["unique_id"].astype(str)
    h["ds"] = pd.to_datetime(h["ds"], errors="coerce")
    h["y"] = pd.to_numeric(h["y"], errors="coerce")
    if h["ds"].isna().any():
        raise HistoryError(f"history has {int(h['ds'].isna().sum())} row(s) whose ds is not a date")
    if h["y"].isna().any() or not np.isfinite(h["y"]).all():
        raise HistoryError(f"history has {int((~np.isfinite(h['y'])).sum())} row(s) whose y is not a finite number")
    if (h["y"] < 0).any():
        raise HistoryError(f"history has {int((h['y'] < 0).sum())} negative demand value(s); demand must be >= 0")
    h["ds"] = week_start(h["ds"])
    weekly = h.groupby(["unique_id", "ds"])["y"].sum()
    span = weekly.reset_index().groupby("unique_id")["ds"]
    out = fill_weeks(weekly, span.min(), span.max())
    short = out.groupby("unique_id").size()
    short = short[short < min_weeks]
    if len(short):
        raise HistoryError(f"SKU(s) {list(short.index[:5])} have fewer than {min_weeks} weeks of history")
    return out


ONE_WEEK_EXPLANATION = (
    "the history covers one week: too short for the router and its members (2 weeks or more), "
    "so that week's demand is repeated (Naive), without intervals"
)


def one_week_forecast(hist: pd.DataFrame, h: int, rule: PatternRule) -> pd.DataFrame:
    """Forecasts of series that cover a single week (``hist`` regularised): that week's demand for every
    step (Naive: the only estimate one value gives) and no interval, which one value cannot support."""
    feats = router_features(hist, 1, rule)
    patterns = rule.patterns(feats)
    last = hist.groupby("unique_id", sort=False).last()
    rows = len(last) * h
    weeks_ahead = np.tile(np.arange(1, h + 1), len(last)) * np.timedelta64(7, "D")
    return pd.DataFrame(
        {
            "unique_id": np.repeat(last.index.to_numpy(), h),
            "ds": np.repeat(last["ds"].to_numpy(), h) + weeks_ahead,
            "step": np.tile(np.arange(1, h + 1), len(last)),
            "yhat": np.repeat(last["y"].to_numpy(dtype=float), h),
            **{c: np.full(rows, np.nan) for c in ("lo80", "hi80", "lo95", "hi95")},
            "method": "Naive",
            "weights": json.dumps({"Naive": 1.0}),
            "confidence": np.nan,
            "pattern": np.repeat(patterns.reindex(last.index).to_numpy(), h),
            "explanation": ONE_WEEK_EXPLANATION,
        }
    )[OUTPUT_COLUMNS]


@dataclass
class RouterModel:
    """Everything needed to forecast with a trained router (saved by :mod:`training.router.storage`)."""

    router: ForecastRouter
    policy: BlendPolicy
    season_length: int
    horizon: int
    rule: PatternRule
    quantiles: pd.DataFrame
    info: dict = field(default_factory=dict)
    zoo_params: dict = field(default_factory=dict)  # tuned member hyper-parameters, e.g. TSB's alphas
    zoo: ModelZoo | None = None  # the members, fitted on the catalogue (see fit_members); None: fit per request

    @classmethod
    def from_training(
        cls, t, info: dict | None = None, zoo_params: dict | None = None, zoo: ModelZoo | None = None
    ) -> RouterModel:
        """``t`` is a :class:`~training.router.train.RouterTraining`; ``zoo`` comes from
        :func:`fit_members` on the full history."""
        return cls(
            t.router, t.policy, t.season_length, t.horizon, t.rule, t.quantiles, dict(info or {}), zoo_params or {},
            zoo,
        )  # fmt: skip

    def route(self, history: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(features, policy weights, explanations) per SKU of a regular weekly history."""
        feats = router_features(history, self.season_length, self.rule)
        raw = self.router.weights(feats)
        weights = self.policy.weights(raw)
        why = self.router.explain(feats, weights=raw)
        return feats, weights, why

    def predict(self, history: pd.DataFrame, horizon: int | None = None, n_jobs: int | None = None) -> pd.DataFrame:
        """Forecasts for every SKU in ``history``: point, 80/95 % intervals, method, confidence, why (a series
        covering a single week: :func:`one_week_forecast`)."""
        h = int(horizon or self.horizon)
        if not 1 <= h <= 104:
            raise HistoryError(f"horizon must be between 1 and 104 weeks, got {h}")
        hist = regularise(history, min_weeks=1)
        weeks = hist.groupby("unique_id")["ds"].transform("size")
        single = one_week_forecast(hist[weeks == 1], h, self.rule) if (weeks == 1).any() else None
        hist = hist[weeks > 1]
        if hist.empty:
            return single.sort_values(["unique_id", "step"]).reset_index(drop=True)
        feats, weights, why = self.route(hist)
        jobs = n_jobs if n_jobs is not None else (1 if len(feats) < 200 else -1)
        frames = []
        parts = {
            method: hist[hist["unique_id"].isin(weights.index[weights[method] > 0])]
            for method in weights.columns[(weights > 0).any(axis=0)]
        }
        if self.zoo is not None and jobs != 1:  # the per-series members: all in one worker pool
            pooled = {m: part for m, part in parts.items() if isinstance(self.zoo.fitted_.get(m), StatsForecastMember)}
            frames += local_members_in_one_pool(self.zoo, pooled, h, jobs)
            parts = {m: part for m, part in parts.items() if m not in pooled}
        for method, part in parts.items():
            if self.zoo is None:  # nothing carried: every member learns from this history
                zoo = ModelZoo([method], self.season_length, n_jobs=jobs, params=self.zoo_params)
                frames.append(zoo.forecast(part, h, intervals=False))
            else:
                frames.append(self.zoo.predict(h, (), panel=part, methods=[method], n_jobs=jobs))
        members = pd.concat(frames, ignore_index=True)
        fc = combine(members, weights, ["unique_id"]).assign(lo80=np.nan, hi80=np.nan, lo95=np.nan, hi95=np.nan)
        patterns = self.rule.patterns(feats)
        fc = add_empirical_intervals(fc, self.quantiles, insample_scales(hist), patterns)
        fc["step"] = fc.groupby("unique_id").cumcount() + 1
        top = weights.idxmax(axis=1)
        fc["method"] = fc["unique_id"].map(top)
        fc["weights"] = fc["unique_id"].map(_weights_text(weights))
        fc["confidence"] = fc["unique_id"].map(why["confidence"]).astype(float)
        fc["pattern"] = fc["unique_id"].map(patterns)
        fc["explanation"] = fc["unique_id"].map(_with_anchor(why["explanation"], self.policy))
        fc["ds"] = pd.to_datetime(fc["ds"])
        fc = fc[OUTPUT_COLUMNS] if single is None else pd.concat([fc[OUTPUT_COLUMNS], single], ignore_index=True)
        return fc.sort_values(["unique_id", "step"]).reset_index(drop=True)

    def describe(self) -> dict:
        return {
            "model": ROUTER,
            "mode": self.policy.mode,
            "top_k": self.policy.top_k,
            "anchor": self.policy.anchor,
            "shrink": self.policy.shrink,
            "methods": self.router.methods_,
            "season_length": self.season_length,
            "horizon": self.horizon,
            **self.info,
        }


_POOL_ZOO: ModelZoo | None = None  # the fitted zoo in a worker of local_members_in_one_pool


def _set_pool_zoo(zoo: ModelZoo) -> None:
    global _POOL_ZOO
    _POOL_ZOO = zoo


def _pool_predict(method: str, panel: pd.DataFrame, h: int) -> pd.DataFrame:
    return _POOL_ZOO.predict(h, (), panel=panel, methods=[method], n_jobs=1)


def portable_zoo(zoo: ModelZoo, methods: list[str]) -> ModelZoo:
    """A copy of ``zoo`` holding only what forecasting ``methods`` from a given panel needs, and that pickles.

    Why: a worker started by forkserver or spawn (Airflow tasks use forkserver, see
    ``plugins/stockml_airflow/common.py``) receives the zoo pickled. A fitted per-series member holds its
    whole training panel (useless here: the panel to forecast is passed with each task) and builds its
    statsforecast model with a closure, which does not pickle; the copy holds the built model instead."""
    light = copy.copy(zoo)
    light.methods = list(methods)
    light.regressors = None
    light.fitted_ = {}
    for name in methods:
        member = copy.copy(zoo.fitted_[name])
        model = member.statsforecast_model()
        member.build = functools.partial(copy.deepcopy, model)  # a fresh model per call, as build() gave
        member.panel_ = None
        light.fitted_[name] = member
    return light


def local_members_in_one_pool(zoo: ModelZoo, parts: dict[str, pd.DataFrame], h: int, n_jobs: int) -> list[pd.DataFrame]:
    """Point forecasts of per-series (statsforecast) members, ``parts`` the history each one forecasts:
    every member's SKUs split across the workers of one process pool, each chunk forecast in a worker
    with ``n_jobs=1``.

    Why: asking the zoo member by member with ``n_jobs`` started a pool per member (twelve a forecast)
    and statsforecast cut each call into 100 tasks per worker; per-series fits do not depend on which
    series share a call, so the forecasts are the same, for one pool start-up and a few tasks per member
    (measured in the commit that added it). The workers get the zoo once, through the initializer, as
    :func:`portable_zoo` (whatever the start method)."""
    if not parts:
        return []
    cores = (os.cpu_count() or 1) if n_jobs < 1 else n_jobs
    workers = max(1, min(cores, max(p["unique_id"].nunique() for p in parts.values())))
    tasks = []
    for method, part in parts.items():
        ids = part["unique_id"].unique()
        for chunk in np.array_split(ids, min(workers, len(ids))):
            tasks.append((method, part[part["unique_id"].isin(chunk)]))
    light = portable_zoo(zoo, list(parts))
    with ProcessPoolExecutor(workers, initializer=_set_pool_zoo, initargs=(light,)) as pool:
        futures = [pool.submit(_pool_predict, method, panel, h) for method, panel in tasks]
        return [f.result() for f in futures]


def fit_members(
    history: pd.DataFrame, methods: list[str], season_length: int, horizon: int, params: dict | None = None
) -> ModelZoo:
    """The router's members fitted on the whole catalogue's history (what the registered model carries)."""
    return ModelZoo(list(methods), season_length, params=params or {}, horizon=horizon).fit(history)


def _with_anchor(explanations: pd.Series, policy: BlendPolicy) -> pd.Series:
    """Say so when the weights were pulled towards the backtest's best single method."""
    if not policy.shrink or not policy.anchor:
        return explanations
    return explanations + (
        f"; blended {100 * policy.shrink:.0f} % with {policy.anchor}, the best single method in the backtest"
    )


def _weights_text(weights: pd.DataFrame) -> pd.Series:
    """Per SKU, the non-zero weights as compact JSON: {"TSB": 0.62, "ADIDA": 0.38}.

    Largest first, ties in column order (as a stable sort of each row); one array pass for the order,
    then only the JSON per SKU."""
    w = weights.to_numpy(dtype=float)
    names = np.asarray(weights.columns, dtype=object)
    order = np.argsort(-w, axis=1, kind="stable")
    ranked = np.take_along_axis(w, order, axis=1)
    keep = (ranked > 0).tolist()
    texts = [
        json.dumps({k: round(v, 3) for k, v, ok in zip(names[o].tolist(), row, pos, strict=True) if ok})
        for o, row, pos in zip(order, ranked.tolist(), keep, strict=True)
    ]
    return pd.Series(texts, index=weights.index, dtype=object)
