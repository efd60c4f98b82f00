"""Tune the forecasting router's XGBoost hyper-parameters with Optuna (TPE, median pruning).

The score of a parameter set is the router's cross-validated error: grouped K-fold over SKUs
(a SKU's backtest windows stay in one fold, so the router is always scored on products it never
saw), fitting on the training folds and averaging ``expected_error`` on the held-out one.
The running mean is reported after each fold so that clearly worse trials stop early.
The study's first trial is always ForecastRouter's defaults, so the tuned result can only
match or beat them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from sklearn.model_selection import GroupKFold

from training.automl._common import (
    BASELINE_ATTR,
    IN_MEMORY,
    LOG,
    TrialLog,
    baseline_value,
    check_fingerprint,
    enqueue_baseline,
    mlflow_tracking,
    omp_threads,
    open_study,
    quiet_optuna,
    rdb_storage,
)
from training.registry.names import ROUTER_MODEL
from training.router.model import ForecastRouter

MODES = ("select", "combine")
DEFAULT_MODE = "combine"
TUNED = ("n_estimators", "max_depth", "learning_rate", "subsample", "colsample_bytree", "min_child_weight")


@dataclass
class TuneResult:
    best_params: dict  # router hyper-parameters, including ``mode``
    best_value: float  # mean cross-validated error (MASE) of the best trial
    n_trials: int  # trials run by this call (a continued study had others before)
    n_pruned: int  # of which stopped early by the pruner
    study_name: str
    storage: str  # the Optuna storage URL ("in-memory" when none was given)
    elapsed_s: float
    baseline_value: float  # the same score for ForecastRouter's defaults
    n_trials_total: int = 0  # trials in the study after this call, earlier runs included


def suggest_router_params(trial: optuna.Trial, mode: str | None) -> dict[str, Any]:
    """The search space (``mode`` too when it is not fixed)."""
    params: dict[str, Any] = {
        "n_estimators": trial.suggest_int("n_estimators", 50, 400, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
    }
    params["mode"] = trial.suggest_categorical("mode", list(MODES)) if mode is None else mode
    return params


def router_defaults(mode: str | None) -> dict[str, Any]:
    """ForecastRouter's default values of the tuned hyper-parameters (the baseline trial)."""
    defaults = {f.name: f.default for f in fields(ForecastRouter) if f.name in TUNED}
    return defaults if mode is not None else {**defaults, "mode": DEFAULT_MODE}


def _align(
    features: pd.DataFrame, errors: pd.DataFrame, groups: pd.Series | None
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    if not features.index.is_unique:
        raise ValueError("features must have one row per index value (for example per (unique_id, cutoff))")
    common = features.index.intersection(errors.index)
    if len(common) < len(features):
        LOG.warning("%d feature rows have no backtest errors and are left out", len(features) - len(common))
    x, e = features.loc[common], errors.loc[common]
    if e.isna().to_numpy().any():
        raise ValueError("errors has missing values: fill them first (see training.router.train.window_errors)")
    if groups is None:
        g = common.get_level_values(0) if isinstance(common, pd.MultiIndex) else common
        return x, e, np.asarray(g)
    if isinstance(groups, pd.Series) and not groups.index.equals(features.index):
        g = groups.reindex(common)  # aligned by index
    elif len(groups) == len(features):
        g = pd.Series(np.asarray(groups), index=features.index).loc[common]  # one value per feature row
    else:
        raise ValueError(f"groups has {len(groups)} values for {len(features)} feature rows")
    if g.isna().any():
        raise ValueError(f"groups gives no SKU for {int(g.isna().sum())} rows")
    return x, e, g.to_numpy()


def _folds(groups: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = len(pd.unique(groups))
    if n_folds < 2 or n_groups < n_folds:
        raise ValueError(f"need n_folds >= 2 and at least n_folds SKUs (groups); got {n_folds} folds, {n_groups} SKUs")
    return list(GroupKFold(n_splits=n_folds).split(np.zeros(len(groups)), groups=groups))


def tune_router(
    features: pd.DataFrame,
    errors: pd.DataFrame,
    groups: pd.Series | None = None,
    *,
    mode: str | None = "combine",
    n_trials: int | None = 30,
    timeout_s: float | None = 300,
    storage: str | None = None,
    study_name: str = ROUTER_MODEL,
    n_folds: int = 3,
    seed: int = 0,
    mlflow_tracking_uri: str | None = None,
    mlflow_experiment: str | None = None,
    n_threads: int | None = 1,
    baseline: dict[str, Any] | None = None,
) -> TuneResult:
    """Tune ForecastRouter on backtest rows; ``features`` and ``errors`` (row × method) share one index.

    Rows are typically (unique_id, cutoff): one per SKU and backtest window. ``groups`` gives each
    row's SKU for the grouped folds (default: the index's first level). ``mode=None`` tunes the
    mode too. ``storage`` is an Optuna RDB URL (``sqlite:///...``, ``postgresql+psycopg://...``);
    ``None`` keeps the study in memory. The budget (``n_trials``, ``timeout_s``) counts only the
    trials of this call: a study that exists under ``study_name`` is continued.
    With ``mlflow_tracking_uri``, one parent run holds a nested run per trial (params, ``cv_mase``),
    in ``mlflow_experiment`` (default: the study name). ``n_threads`` caps XGBoost's OpenMP threads
    per fit while tuning (``None``: as the router sets them, all cores); one thread is as fast
    on small problems and does not collapse when other jobs share the cores. ``baseline`` is the
    first trial's hyper-parameters (default: ForecastRouter's defaults, :func:`router_defaults`).
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None (tune it), not {mode!r}")
    if n_trials is None and timeout_s is None:
        raise ValueError("give n_trials or timeout_s (or both): the search needs a budget")
    start = time.perf_counter()
    x, e, g = _align(features, errors, groups)
    folds = _folds(g, n_folds)
    splits = [(x.iloc[tr], e.iloc[tr], x.iloc[va], e.iloc[va]) for tr, va in folds]

    def objective(trial: optuna.Trial) -> float:
        params = suggest_router_params(trial, mode)
        prunable = not trial.user_attrs.get(BASELINE_ATTR)  # the defaults are always scored in full
        scores: list[float] = []
        for step, (x_tr, e_tr, x_va, e_va) in enumerate(splits):
            router = ForecastRouter(**params, seed=seed).fit(x_tr, e_tr)
            scores.append(float(router.expected_error(x_va, e_va).mean()))
            trial.report(float(np.mean(scores)), step)
            if prunable and trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    fingerprint = {
        "rows": len(x),
        "skus": len(pd.unique(g)),
        "features": list(x.columns),
        "methods": list(e.columns),
        "mode": mode or "tuned",
        "n_folds": n_folds,
    }
    log = TrialLog()
    with quiet_optuna(), rdb_storage(storage) as rdb:
        study = open_study(
            storage=rdb,
            study_name=study_name,
            seed=seed,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        )
        check_fingerprint(study, fingerprint)
        enqueue_baseline(study, router_defaults(mode) if baseline is None else baseline)
        with mlflow_tracking(mlflow_tracking_uri, mlflow_experiment or study_name, run_name=study_name) as tracking:
            with omp_threads(n_threads):
                study.optimize(objective, n_trials=n_trials, timeout=timeout_s, callbacks=[log, *tracking.callbacks])
            best = study.best_trial
            best_params = {**best.params, **({"mode": mode} if mode is not None else {})}
            result = TuneResult(
                best_params=best_params,
                best_value=float(best.value),
                n_trials=log.count(),
                n_pruned=log.count(TrialState.PRUNED),
                study_name=study_name,
                storage=storage or IN_MEMORY,
                elapsed_s=time.perf_counter() - start,
                baseline_value=baseline_value(study),
                n_trials_total=len(study.get_trials(deepcopy=False)),
            )
            tracking.summary(
                best_params,
                {
                    "best_cv_mase": result.best_value,
                    "baseline_cv_mase": result.baseline_value,
                    "n_trials": result.n_trials,
                    "n_pruned": result.n_pruned,
                },
            )
    gain = 100 * (1 - result.best_value / result.baseline_value) if result.baseline_value > 0 else float("nan")
    LOG.info(
        "router tuning %r: %d trials (%d pruned, %d in the study) in %.1f s; CV MASE %.4f vs %.4f with the "
        "defaults (%.1f %% better); best %s",
        study_name,
        result.n_trials,
        result.n_pruned,
        result.n_trials_total,
        result.elapsed_s,
        result.best_value,
        result.baseline_value,
        gain,
        best_params,
    )
    return result


def best_router(result: TuneResult, mode_default: str = DEFAULT_MODE) -> ForecastRouter:
    """An unfitted ForecastRouter with the tuned hyper-parameters (``mode_default`` if none was tuned)."""
    known = {f.name for f in fields(ForecastRouter) if f.init}
    params = {k: v for k, v in result.best_params.items() if k in known}
    params.setdefault("mode", mode_default)
    return ForecastRouter(**params)
