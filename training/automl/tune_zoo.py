"""Tune the hyper-parameters of the zoo members that have them (today: TSB's two smoothing rates).

Each trial backtests one method with candidate parameters on a fixed, seeded sample of SKUs
and scores the mean MASE over SKUs and windows. The study starts from the method's current
defaults, and the defaults are kept unless a trial beats them. The result plugs straight into
``ModelZoo(params=...)``.

A method joins the tuner with two entries: its keyword parameters in the zoo (``MethodSpec.params``
and ``build(m, **params)`` in training/forecasting/zoo.py) and a search space in ``TUNABLE`` here.
ADIDA and IMAPA have no hyper-parameters in statsforecast; the Auto* models choose their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pandas as pd

from training.automl._common import (
    LOG,
    TrialLog,
    baseline_value,
    check_fingerprint,
    enqueue_baseline,
    mlflow_tracking,
    open_study,
    quiet_optuna,
    rdb_storage,
)
from training.forecasting.backtest import MIN_TRAIN_WEEKS, backtest
from training.forecasting.methods import method_registry
from training.forecasting.zoo import ModelZoo

# Smoothing rates on a log scale: the useful values for slow movers are the small ones.
TUNABLE: dict[str, Callable[[optuna.Trial], dict]] = {
    "TSB": lambda trial: {
        "alpha_d": trial.suggest_float("alpha_d", 0.01, 0.5, log=True),
        "alpha_p": trial.suggest_float("alpha_p", 0.01, 0.5, log=True),
    },
}


def default_params(method: str) -> dict[str, Any]:
    """The zoo's default values of ``method``'s tunable parameters (from its ``build`` signature)."""
    spec = method_registry()[method]
    return {name: spec.defaults[name] for name in spec.params}


def _sample(demand: pd.DataFrame, need: int, sample_skus: int | None, seed: int) -> pd.DataFrame:
    """The SKUs long enough for every backtest window; a seeded subset of ``sample_skus`` of them."""
    lengths = demand.groupby("unique_id").size()
    eligible = np.sort(lengths[lengths >= need].index.to_numpy())
    if len(eligible) == 0:
        raise ValueError(f"no SKU has the {need} weeks the backtest windows need")
    if sample_skus is not None and sample_skus < len(eligible):
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, size=sample_skus, replace=False))
    return demand[demand["unique_id"].isin(eligible)]


def tune_zoo(
    demand: pd.DataFrame,
    methods: tuple[str, ...] | list[str] = ("TSB",),
    *,
    h: int = 13,
    n_windows: int = 2,
    season_length: int = 52,
    n_trials: int | None = 20,
    timeout_s: float | None = 120,
    storage: str | None = None,
    study_prefix: str = "stockml-zoo",
    sample_skus: int | None = 200,
    seed: int = 0,
    mlflow_tracking_uri: str | None = None,
) -> dict[str, dict]:
    """Best parameters per method, e.g. ``{"TSB": {"alpha_d": 0.08, "alpha_p": 0.03}}``.

    ``demand`` is the long weekly frame (unique_id, ds, y); pass the SKUs the method will forecast
    (for TSB, the intermittent and lumpy ones). One study per method, ``{study_prefix}-{method}``,
    in ``storage`` (continued when it exists; ``None`` keeps it in memory). ``timeout_s`` is the
    whole call's budget, shared among the methods; ``n_trials`` is per method.
    """
    unknown = [m for m in methods if m not in TUNABLE]
    if unknown:
        raise ValueError(f"no search space for {unknown}; tunable methods: {list(TUNABLE)}")
    if n_trials is None and timeout_s is None:
        raise ValueError("give n_trials or timeout_s (or both): the search needs a budget")
    start = time.perf_counter()
    data = _sample(demand, h * n_windows + MIN_TRAIN_WEEKS, sample_skus, seed)
    n_skus = int(data["unique_id"].nunique())
    best: dict[str, dict] = {}
    for i, name in enumerate(methods):
        defaults = default_params(name)

        def objective(trial: optuna.Trial, name: str = name) -> float:
            params = TUNABLE[name](trial)
            zoo = ModelZoo(methods=[name], season_length=season_length, n_jobs=1, params={name: params})
            return float(backtest(data, zoo, h=h, n_windows=n_windows).errors["mase"].mean())

        timeout = None if timeout_s is None else max(timeout_s - (time.perf_counter() - start), 0) / (len(methods) - i)
        study_name = f"{study_prefix}-{name}"
        log = TrialLog()
        with quiet_optuna(), rdb_storage(storage) as rdb:
            study = open_study(storage=rdb, study_name=study_name, seed=seed)
            fingerprint = {"skus": n_skus, "rows": len(data), "h": h, "n_windows": n_windows, "m": season_length}
            check_fingerprint(study, fingerprint)
            enqueue_baseline(study, defaults)
            with mlflow_tracking(mlflow_tracking_uri, study_name, run_name=study_name) as tracking:
                study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[log, *tracking.callbacks])
                base = baseline_value(study)
                complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                winner = min(complete, key=lambda t: t.value) if complete else None
                beaten = winner is not None and not winner.value >= base  # NaN baseline: any complete trial wins
                best[name] = dict(winner.params) if beaten else dict(defaults)
                value = winner.value if beaten else base
                tracking.summary(best[name], {"best_cv_mase": value, "baseline_cv_mase": base})
        LOG.info(
            "zoo tuning %s on %d SKUs: %d trials; backtest MASE %.4f vs %.4f with the defaults %s; keeping %s",
            name,
            n_skus,
            log.count(),
            value,
            base,
            defaults,
            best[name],
        )
    return best
