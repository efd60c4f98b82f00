"""Tuning: TSB's smoothing constants before the backtest, the router's hyper-parameters after it."""

from __future__ import annotations

import logging
from dataclasses import asdict

from stockml.run import Run
from stockml.steps.backtest import load_backtest
from stockml.steps.classify import load_classes
from stockml.steps.ingest import load_demand
from stockml.steps.registry import configure_mlflow
from training.router.train import PatternRule, learning_rows

log = logging.getLogger("stockml.pipeline")


def pattern_rule(run: Run) -> PatternRule:
    s = run.settings
    return PatternRule(s.adi_cutoff, s.cv2_cutoff, s.xyz_cutoffs)


def tune_zoo_step(run: Run, trials: int | None = None) -> dict[str, dict]:
    """Tune TSB's smoothing constants on the intermittent and lumpy SKUs, before the backtest.

    TSB is the zoo member with hyper-parameters that matter (the Auto* models choose their
    own); it is tuned where it is used, on a seeded sample of the products with zero weeks.
    The result is saved in the run folder; the backtest and the router's pyfunc use it.
    """
    from training.automl.tune_zoo import tune_zoo

    s = run.settings
    layout = run.layout
    trials = s.zoo_trials if trials is None else trials
    methods = s.methods or []
    if trials <= 0 or (methods and "TSB" not in methods):
        run.save_json(layout.zoo_params, {})
        return {}
    demand, _ = load_demand(run)
    classes = load_classes(run)
    sparse = classes.index[classes["pattern"].isin(["intermittent", "lumpy"])]
    subset = demand[demand["unique_id"].isin(sparse)]
    if subset["unique_id"].nunique() < 10:
        run.save_json(layout.zoo_params, {})
        return {}
    configure_mlflow(run.settings)
    params = tune_zoo(
        subset, ("TSB",), h=s.horizon, n_windows=2, season_length=s.season_length, n_trials=trials,
        timeout_s=s.automl_timeout_s / 2, storage=s.optuna_url, study_prefix=f"{s.mlflow_experiment}-zoo",
        sample_skus=200, mlflow_tracking_uri=s.tracking_uri,
    )  # fmt: skip
    run.save_json(layout.zoo_params, params)
    log.info("zoo tuned", extra={"params": params})
    return params


def automl_step(run: Run, trials: int | None = None, timeout_s: float | None = None) -> dict:
    """Tune the router's hyper-parameters with Optuna on the windows before the holdout window.

    Tuning never sees the last window, so the holdout comparison in the router step stays
    honest. The study is persistent (``settings.optuna_url``): later runs continue it.
    """
    from training.automl.tune_router import tune_router

    s = run.settings
    trials = s.automl_trials if trials is None else trials
    if trials <= 0:
        run.save_json(run.layout.automl, {"best_params": {}, "skipped": True})
        return {}
    demand, _ = load_demand(run)
    bt = load_backtest(run)
    x, e, is_last = learning_rows(demand, bt, s.season_length, pattern_rule(run), s.router_metric)
    configure_mlflow(run.settings)
    result = tune_router(
        x[~is_last],
        e[~is_last],
        mode=s.router_mode or "combine",
        n_trials=trials,
        timeout_s=timeout_s or s.automl_timeout_s,
        storage=s.optuna_url,
        study_name=f"{s.mlflow_experiment}-{s.router_mode or 'combine'}",
        mlflow_tracking_uri=s.tracking_uri,
        mlflow_experiment=f"{s.mlflow_experiment}-automl",
    )
    out = asdict(result)
    run.save_json(run.layout.automl, out)
    log.info("automl done", extra={k: out[k] for k in ("best_value", "baseline_value", "n_trials", "n_pruned")})
    return result.best_params
