"""Train the router from rolling-origin backtests, judge it on the last window, pick the mode.

Why one training row per (SKU, backtest window), with features from that window's training
data only: the router must learn "given what the history looked like at the origin, which
method wins the next h weeks", which is the question it answers in production. Features of
the full history would leak the future the errors were measured on, and one row per SKU
would throw away two thirds of the evidence.

Evaluation is temporal: the router is fitted on the earlier windows and scored on the last
one, against the single method that was best on the earlier windows (what a planner without
a router would deploy), the classical Croston/ETS rule, and the per-SKU oracle. Both modes
are evaluated; the better one on that holdout becomes the default, as the issue asks.
Interval quantiles come from leave-one-window-out router forecasts, so every window's
router error is out of sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.forecasting.backtest import BacktestResult, residual_quantiles, window_scales
from training.forecasting.metrics import pointwise_errors, summarise
from training.router.features import series_features
from training.router.model import ForecastRouter

log = logging.getLogger("stockml.router")

ROUTER = "router"
KEYS = ["unique_id", "cutoff"]
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")
MAX_STEPS = 104


@dataclass(frozen=True)
class PatternRule:
    """Syntetos-Boylan cut-offs and XYZ bands, so the router can class a single series itself."""

    adi_cutoff: float = 1.32
    cv2_cutoff: float = 0.49
    xyz_cutoffs: tuple[float, float] = (0.5, 1.0)

    def patterns(self, features: pd.DataFrame) -> pd.Series:
        """Syntetos-Boylan pattern per row of ``features`` (columns adi, cv2): the classification's rule."""
        from training.classification.classes import demand_patterns

        return demand_patterns(features["adi"], features["cv2"], self.adi_cutoff, self.cv2_cutoff).rename("pattern")

    def xyz(self, cv: pd.Series) -> np.ndarray:
        """XYZ band codes (0 X, 1 Y, 2 Z) of coefficients of variation: the classification's rule."""
        from training.classification.classes import xyz_codes

        return xyz_codes(cv, self.xyz_cutoffs)


def router_features(demand: pd.DataFrame, season_length: int = 52, rule: PatternRule | None = None) -> pd.DataFrame:
    """Series features plus the series' own pattern and XYZ band.

    Only what one SKU's history tells: catalogue-relative classes (ABC, clusters, the anomaly
    forest) cannot be computed for a single product in a serving request, and a feature that
    is present in training but missing in serving silently changes the router's decisions.

    Of the clusters, K-means, DBSCAN, HDBSCAN and the Gaussian mixture label a product by where
    the others lie, so they stay out. The yearly-shape cluster (``season_cluster``) could be
    computed for one product by nearest centroid if the centroids travelled with the model (as
    JSON in its saved state); it is left out all the same: what it could tell the router about
    the choice of method, how strong the yearly cycle is, is already here from the product's own
    history (``seasonal_strength``, ``acf_seasonal``); *which* season (the phase) does not make one
    method suit better than another; and the cluster numbers change whenever the catalogue is
    re-clustered, so a router trained on one numbering would misread the next.
    """
    rule = rule or PatternRule()
    f = series_features(demand, season_length)
    pattern = rule.patterns(f)
    for p in PATTERNS:
        f[f"is_{p}"] = (pattern == p).astype(float)
    f["xyz"] = np.asarray(rule.xyz(f["cv"]), dtype=float)
    return f


def window_features(
    demand: pd.DataFrame, origins: pd.DataFrame, season_length: int = 52, rule: PatternRule | None = None
) -> pd.DataFrame:
    """Features of every (unique_id, cutoff) in ``origins`` from the history up to that cutoff."""
    frames = []
    for cutoff, ids in origins.groupby("cutoff")["unique_id"]:
        hist = demand[demand["unique_id"].isin(ids.unique()) & (demand["ds"] <= cutoff)]
        f = router_features(hist, season_length, rule)
        f["cutoff"] = cutoff
        frames.append(f.reset_index().set_index(KEYS))
    return pd.concat(frames).sort_index()


def window_errors(errors: pd.DataFrame, metric: str = "mase", baseline: str = "Naive2") -> pd.DataFrame:
    """(unique_id, cutoff) × method error table the router learns from.

    ``mase`` (inventory default): MASE, with MAE relative to the best method where MASE is
    undefined. ``owa`` (M4, as FFORMA trained): per row ½(sMAPE/sMAPE_Naive2 + MASE/MASE_Naive2),
    which needs the ``baseline`` method in the backtest.
    """
    e = errors.set_index([*KEYS, "method"])
    table = e["mase"].unstack("method")
    fallback = e["mae"].unstack("method")
    rows = table.isna().all(axis=1)
    if rows.any():
        table.loc[rows] = fallback.loc[rows].div(fallback.loc[rows].min(axis=1).replace(0, 1), axis=0)
    if metric == "owa":
        if baseline not in table.columns:
            raise ValueError(f"metric 'owa' needs {baseline} in the backtest")
        smape = e["smape"].unstack("method")
        s_base = smape[baseline].where(smape[baseline] > 0, 1.0)
        m_base = table[baseline].where(table[baseline] > 0, 1.0)
        table = 0.5 * (smape.div(s_base, axis=0) + table.div(m_base, axis=0))
    elif metric != "mase":
        raise ValueError(f"metric must be 'mase' or 'owa', not {metric!r}")
    return table.apply(lambda col: col.fillna(table.max(axis=1)))


SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class BlendPolicy:
    """How router weights become a forecast: the arg-max method, or the top-k weights renormalised.

    (The router's blend policy, named so beside the RL agent's stock policies.)

    ``shrink`` > 0 then pulls every SKU's weights towards ``anchor``, the best single method of
    the backtest: ``(1 - shrink) * router + shrink * anchor``. Why: per-SKU errors of one
    13-week window are noisy, and when one member is much stronger across the catalogue (the
    global XGBoost on M4) a router that follows its per-SKU hunches gives away accuracy. The
    amount is chosen on the held-out window (``train_router``), so 0 where routing pays and 1
    where the anchor alone is better.
    """

    mode: str = "combine"
    top_k: int = 2
    anchor: str | None = None
    shrink: float = 0.0

    def weights(self, raw: pd.DataFrame) -> pd.DataFrame:
        w = raw.to_numpy(dtype=float)
        k = 1 if self.mode == "select" else max(1, min(self.top_k, w.shape[1]))
        keep = np.argsort(-w, axis=1)[:, :k]
        mask = np.zeros_like(w, dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        w = np.where(mask, w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
        if self.shrink > 0 and self.anchor in raw.columns:
            w = (1 - self.shrink) * w
            w[:, list(raw.columns).index(self.anchor)] += self.shrink
        return pd.DataFrame(w, index=raw.index, columns=raw.columns)


def combine(forecasts: pd.DataFrame, weights: pd.DataFrame, keys: list[str], name: str = ROUTER) -> pd.DataFrame:
    """Weighted sum of the methods' point forecasts, one weight row per ``keys`` value."""
    wide = forecasts.pivot_table(index=[*keys, "ds"], columns="method", values="yhat", aggfunc="first")
    w = weights.reindex(columns=wide.columns).fillna(0.0)
    w_rows = w.reindex(wide.index.droplevel("ds")).to_numpy()
    yhat = np.nansum(wide.to_numpy() * w_rows, axis=1)
    out = wide.index.to_frame(index=False)
    out["method"] = name
    out["yhat"] = yhat
    if "y" in forecasts:
        y = forecasts.drop_duplicates([*keys, "ds"]).set_index([*keys, "ds"])["y"]
        out["y"] = y.reindex(wide.index).to_numpy()
    return out


@dataclass
class RouterTraining:
    """A fitted router with everything the pyfunc and the registry need."""

    router: ForecastRouter
    policy: BlendPolicy
    season_length: int
    horizon: int
    rule: PatternRule
    quantiles: pd.DataFrame  # residual quantiles of the router, per pattern and step
    holdout_table: pd.DataFrame  # last-window metrics: router modes, single methods, rule, oracle
    holdout_errors: pd.DataFrame  # per-SKU errors on the last window, incl. the router's
    holdout_forecasts: pd.DataFrame  # last-window forecasts, incl. the router's
    holdout_cutoff: pd.Timestamp
    best_single: str
    mode_scores: dict[str, float]
    targets: dict[str, float] = field(default_factory=dict)
    shrink_scores: dict[float, float] = field(default_factory=dict)  # last-window metric per shrink


def window_index(origins: pd.DataFrame) -> pd.Series:
    """1, 2, … per SKU in cutoff order: windows line up by position, not by date.

    The demo's SKUs share calendar cutoffs, but M4's integer-indexed series each have their own,
    so "the last window" must be each series' last, not the latest cutoff overall.
    """
    return origins.groupby("unique_id")["cutoff"].rank(method="dense").astype(int)


def last_window_keys(origins: pd.DataFrame) -> pd.MultiIndex:
    """(unique_id, cutoff) of each series' last backtest window (series with one window have none)."""
    origins = origins.reset_index(drop=True)
    window = window_index(origins)
    last = (window == window.groupby(origins["unique_id"]).transform("max")) & (window > 1)
    return pd.MultiIndex.from_frame(origins.loc[last, KEYS])


def learning_rows(
    demand: pd.DataFrame,
    backtest: BacktestResult,
    season_length: int = 52,
    rule: PatternRule | None = None,
    metric: str = "mase",
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Aligned (features, errors) per (SKU, window), and which rows are their series' last window.

    AutoML tunes on the rows before the last windows; training judges the router on the last ones.
    """
    origins = backtest.errors[KEYS].drop_duplicates()
    feats = window_features(demand, origins, season_length, rule)
    errors = window_errors(backtest.errors, metric)
    common = feats.index.intersection(errors.index)
    x, e = feats.loc[common], errors.loc[common]
    return x, e, x.index.isin(last_window_keys(origins))


def _oof_router_forecasts(
    make: ForecastRouter, policy: BlendPolicy, x: pd.DataFrame, e: pd.DataFrame, forecasts: pd.DataFrame
) -> pd.DataFrame:
    """Leave-one-window-out router forecasts: each window routed by a router that never saw it."""
    frames = []
    windows = window_index(x.index.to_frame(index=False)).to_numpy()
    keys = pd.MultiIndex.from_frame(forecasts[KEYS])
    for w in np.unique(windows):
        train, test = windows != w, windows == w
        if train.sum() < 10:
            continue
        r = ForecastRouter(**{**make.params(), "mode": policy.mode}).fit(x[train], e[train])
        wts = policy.weights(r.weights(x[test]))
        frames.append(combine(forecasts[keys.isin(x.index[test])], wts, KEYS))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def train_router(
    demand: pd.DataFrame,
    backtest: BacktestResult,
    season_length: int = 52,
    mode: str | None = None,
    params: dict | None = None,
    top_k: int = 2,
    rule: PatternRule | None = None,
    metric: str = "mase",
) -> RouterTraining:
    """Fit the router on the backtest, evaluate both modes on the last window, keep the better."""
    rule = rule or PatternRule()
    origins = backtest.errors[KEYS].drop_duplicates()
    last_keys = last_window_keys(origins)
    if last_keys.empty:
        raise ValueError("the router needs at least 2 backtest windows: one to learn from, one to judge on")

    def in_last(frame: pd.DataFrame) -> np.ndarray:
        return pd.MultiIndex.from_frame(frame[KEYS]).isin(last_keys)

    x_all, e_all, is_last = learning_rows(demand, backtest, season_length, rule, metric)
    x_tr, e_tr, x_ho = x_all[~is_last], e_all[~is_last], x_all[is_last]
    params = {k: v for k, v in (params or {}).items() if k != "mode"}

    fc_last = backtest.forecasts[in_last(backtest.forecasts)]
    errors_last = backtest.errors[in_last(backtest.errors)]
    earlier = backtest.errors[~in_last(backtest.errors)]
    best_single = str(summarise(earlier).sort_values(metric).index[0])
    scales = window_scales(demand, origins[in_last(origins)])

    def judge(policies: dict, raw: dict) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
        """Each policy's last-window metric, with its forecasts and errors (method ``router:<name>``)."""
        routed = pd.concat(
            [combine(fc_last, pol.weights(raw[name]), KEYS, f"{ROUTER}:{name}") for name, pol in policies.items()],
            ignore_index=True,
        )
        routed_err = pointwise_errors(routed, scales)
        scored = summarise(pd.concat([errors_last, routed_err], ignore_index=True))
        return {name: float(scored.loc[f"{ROUTER}:{name}", metric]) for name in policies}, routed, routed_err

    modes = ("select", "combine") if mode is None else (mode,)
    raw = {m: ForecastRouter(mode=m, **params).fit(x_tr, e_tr).weights(x_ho) for m in modes}
    mode_scores, _, _ = judge({m: BlendPolicy(m, top_k) for m in modes}, raw)
    chosen = min(mode_scores, key=mode_scores.get)
    log.info("router modes on the holdout window", extra={metric: mode_scores, "chosen": chosen})
    # How far to trust the router over the best single method: chosen on the same window.
    shrinks = {f"{a:g}": BlendPolicy(chosen, top_k, best_single, a) for a in SHRINK_GRID}
    shrink_scores, routed, routed_err = judge(shrinks, {k: raw[chosen] for k in shrinks})
    best = min(shrink_scores, key=lambda k: (round(shrink_scores[k], 6), float(k)))
    policy = shrinks[best]
    log.info("router shrinkage towards the best single", extra={metric: shrink_scores, "chosen": best})
    name = f"{ROUTER}:{best}"
    routed, routed_err = routed[routed["method"] == name], routed_err[routed_err["method"] == name]

    holdout_fc = pd.concat([fc_last, routed.replace({"method": {name: ROUTER}})], ignore_index=True)
    chosen_err = routed_err.replace({"method": {name: ROUTER}})
    holdout_err = pd.concat([errors_last, chosen_err], ignore_index=True)
    table, targets = _holdout_table(holdout_err, best_single, x_ho, rule)

    final = ForecastRouter(mode=chosen, **params).fit(x_all, e_all)
    oof = _oof_router_forecasts(final, policy, x_all, e_all, backtest.forecasts)
    oof_scales = window_scales(demand, origins)
    oof_err = pointwise_errors(oof, oof_scales)
    oof_bt = BacktestResult(oof, oof_err, summarise(oof_err), [], backtest.h, backtest.n_windows)
    patterns = rule.patterns(x_all.groupby(level="unique_id").last())
    quantiles = _extend_steps(residual_quantiles(oof_bt, patterns))
    targets["share_within_10pct_of_best_all_windows"] = _share_within(oof_err, backtest.errors)
    return RouterTraining(
        final, policy, season_length, backtest.h, rule, quantiles, table, holdout_err, holdout_fc,
        last_keys.get_level_values("cutoff").max(), best_single, mode_scores, targets,
        {float(k): v for k, v in shrink_scores.items()},
    )  # fmt: skip


def _share_within(router_errors: pd.DataFrame, single_errors: pd.DataFrame, tolerance: float = 0.10) -> float:
    """Share of SKUs whose out-of-fold router MASE, averaged over every window, is within
    ``tolerance`` of their best single method's MASE averaged over the same windows.

    The single-window version of this figure (``share_within_10pct_of_best``) compares with the
    method that happened to win 13 weeks; averaged over the windows, "best" is less a matter of luck.
    """
    if router_errors.empty:
        return float("nan")
    per_method = single_errors.groupby(["unique_id", "method"])["mase"].mean().unstack("method")
    router = router_errors.groupby("unique_id")["mase"].mean().reindex(per_method.index)
    best = per_method.min(axis=1)
    ok = (router <= (1 + tolerance) * best + 1e-12) & best.notna() & router.notna()
    return float(ok[best.notna() & router.notna()].mean())


def _extend_steps(q: pd.DataFrame) -> pd.DataFrame:
    """Carry the last step's quantiles out to MAX_STEPS, for horizons longer than the backtest's."""
    frames = [q]
    for _, part in q.groupby(["method", "group"]):
        top = part.loc[part["step"].idxmax()]
        extra = pd.DataFrame([top] * max(0, MAX_STEPS - int(top["step"])))
        if len(extra):
            extra["step"] = np.arange(int(top["step"]) + 1, MAX_STEPS + 1)
            frames.append(extra)
    return pd.concat(frames, ignore_index=True)


def _holdout_table(
    errors: pd.DataFrame, best_single: str, features: pd.DataFrame, rule: PatternRule
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Metrics per method on the last window (with the per-SKU oracle), and the figures the issue targets."""
    e = errors.copy()
    patterns = rule.patterns(features.droplevel("cutoff"))
    e["pattern"] = e["unique_id"].map(patterns)
    singles = e[~e["method"].str.startswith(ROUTER)]
    key = singles["mase"].fillna(singles["mae"] * 1e6)
    oracle = singles.loc[key.groupby(singles["unique_id"]).idxmin()].assign(method="oracle")
    table = summarise(pd.concat([e, oracle], ignore_index=True).drop(columns="pattern"))
    per_sku = singles.pivot_table(index="unique_id", columns="method", values="mase")
    router_sku = e[e["method"] == ROUTER].set_index("unique_id")["mase"].reindex(per_sku.index)
    best = per_sku.min(axis=1)
    ok = (router_sku <= 1.10 * best + 1e-12) & best.notna()
    targets = {
        "router_owa": float(table.loc[ROUTER, "owa"]),
        "best_single_owa": float(table.loc[best_single, "owa"]) if best_single in table.index else float("nan"),
        "router_mase": float(table.loc[ROUTER, "mase"]),
        "best_single_mase": float(table.loc[best_single, "mase"]) if best_single in table.index else float("nan"),
        "oracle_mase": float(table.loc["oracle", "mase"]),
        "share_within_10pct_of_best": float(ok[best.notna()].mean()),
    }
    return table, targets
