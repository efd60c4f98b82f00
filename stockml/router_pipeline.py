"""Pipeline steps after the backtest: AutoML → train the router → register → promote → forecast.

Each step reads what earlier steps left in the run folder, so the CLI and the Airflow tasks
call the same functions. The forecasts written to ``stock_forecasts`` come from the
``champion`` in the MLflow registry, loaded by alias: what the pipeline writes is exactly what
the registry says serves.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import mlflow
import pandas as pd

from stockml.pipeline import Progress, Run, _noop, load_backtest, load_demand, zoo_params
from stockml.plots import plot_backtest_samples, plot_error_by_pattern
from stockml.settings import Settings
from training.evaluation.compare import CLASSICAL_RULE, classical_rule_forecasts, evaluate
from training.forecasting.backtest import window_scales
from training.forecasting.metrics import pointwise_errors
from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel, fit_members
from training.router.storage import save_router
from training.router.train import KEYS, ROUTER, PatternRule, learning_rows, train_router

log = logging.getLogger("stockml.pipeline")


def _rule(run: Run) -> PatternRule:
    s = run.settings
    return PatternRule(s.adi_cutoff, s.cv2_cutoff, s.xyz_cutoffs)


def configure_mlflow(s: Settings) -> str:
    """Point MLflow at the configured registry (embedded SQLite under ``home`` by default)."""
    s.home.mkdir(parents=True, exist_ok=True)
    return reg.configure(s.tracking_uri, s.mlflow_experiment, s.artifact_root)


def tune_zoo_step(run: Run, trials: int | None = None) -> dict[str, dict]:
    """Tune TSB's smoothing constants on the intermittent and lumpy SKUs, before the backtest.

    TSB is the zoo member with hyper-parameters that matter (the Auto* models choose their
    own); it is tuned where it is used, on a seeded sample of the products with zero weeks.
    The result is saved in the run folder; the backtest and the router's pyfunc use it.
    """
    from training.automl.tune_zoo import tune_zoo

    s = run.settings
    trials = s.zoo_trials if trials is None else trials
    methods = s.methods or []
    if trials <= 0 or (methods and "TSB" not in methods):
        run.save_json("zoo_params.json", {})
        return {}
    demand, _ = load_demand(run)
    classes = pd.read_parquet(run.dir / "classes.parquet")
    sparse = classes.index[classes["pattern"].isin(["intermittent", "lumpy"])]
    subset = demand[demand["unique_id"].isin(sparse)]
    if subset["unique_id"].nunique() < 10:
        run.save_json("zoo_params.json", {})
        return {}
    configure_mlflow(run.settings)
    params = tune_zoo(
        subset, ("TSB",), h=s.horizon, n_windows=2, season_length=s.season_length, n_trials=trials,
        timeout_s=s.automl_timeout_s / 2, storage=s.optuna_url, study_prefix=f"{s.mlflow_experiment}-zoo",
        sample_skus=200, mlflow_tracking_uri=s.tracking_uri,
    )  # fmt: skip
    run.save_json("zoo_params.json", params)
    log.info("zoo tuned", extra={"params": params})
    return params


def automl_step(run: Run, trials: int | None = None, timeout_s: float | None = None) -> dict:
    """Tune the router's hyper-parameters with Optuna on the windows before the holdout window.

    Tuning never sees the last window, so the holdout comparison in :func:`train_router_step`
    stays honest. The study is persistent (``settings.optuna_url``): later runs continue it.
    """
    from training.automl.tune_router import tune_router

    s = run.settings
    trials = s.automl_trials if trials is None else trials
    if trials <= 0:
        run.save_json("automl.json", {"best_params": {}, "skipped": True})
        return {}
    demand, _ = load_demand(run)
    bt = load_backtest(run)
    x, e, is_last = learning_rows(demand, bt, s.season_length, _rule(run), s.router_metric)
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
    run.save_json("automl.json", out)
    log.info("automl done", extra={k: out[k] for k in ("best_value", "baseline_value", "n_trials", "n_pruned")})
    return result.best_params


def train_router_step(run: Run, progress: Progress = _noop) -> reg.RegisteredVersion:
    """Train the router on the backtest, evaluate it, log everything and register a challenger."""
    s = run.settings
    progress("router", 0, 3)
    demand, products = load_demand(run)
    bt = load_backtest(run)
    classes = pd.read_parquet(run.dir / "classes.parquet")
    automl = run.load_json("automl.json") if (run.dir / "automl.json").exists() else {}
    params = {k: v for k, v in automl.get("best_params", {}).items() if k != "mode"}
    training = train_router(
        demand, bt, s.season_length, s.router_mode, params, s.router_top_k, _rule(run), s.router_metric
    )
    progress("router", 1, 3)

    # The evaluation report: router vs every single method and the classical rule, on the holdout window.
    fc = training.holdout_forecasts
    rule_fc = classical_rule_forecasts(fc[fc["method"] != ROUTER], classes["pattern"])
    scales = window_scales(demand, fc[KEYS].drop_duplicates())
    errors = pd.concat([training.holdout_errors, pointwise_errors(rule_fc, scales)], ignore_index=True)
    evaluation = evaluate(pd.concat([fc, rule_fc], ignore_index=True), errors, classes, products, reference=ROUTER)
    report_dir = run.dir / "router_report"
    report_dir.mkdir(exist_ok=True)
    evaluation.to_html(report_dir / "evaluation.html", title=f"stockml router evaluation · run {run.run_id}")
    for name, frame in evaluation.to_frames().items():
        frame.to_csv(report_dir / f"{name}.csv", index=False)
    sample = fc[fc["method"].isin([ROUTER, training.best_single, "TSB"])]
    plot_backtest_samples(
        sample, demand, classes, report_dir / "forecast_vs_actual.png", methods=(ROUTER, training.best_single, "TSB")
    )
    plot_error_by_pattern(
        evaluation.by_pattern, report_dir / "error_by_pattern.png", [ROUTER, training.best_single, CLASSICAL_RULE]
    )
    progress("router", 2, 3)

    cutoff = training.holdout_cutoff
    # The holdout is the last backtest window's SKUs: promotion figures then match the training ones.
    holdout = reg.split_holdout(demand, cutoff, training.horizon, list(fc["unique_id"].unique()))
    window = {"data_start": str(demand["ds"].min().date()), "data_end": str(demand["ds"].max().date())}
    members = fit_members(demand, training.router.methods_, s.season_length, training.horizon, zoo_params(run))
    model = RouterModel.from_training(training, {**window, "run_id": run.run_id}, zoo_params(run), members)
    save_router(model, run.dir / "router_model")
    metrics = _metrics(training, evaluation)
    configure_mlflow(run.settings)
    version = reg.log_router(
        model,
        params={
            **training.router.params(),
            "top_k": training.policy.top_k,
            "shrink": training.policy.shrink,
            "anchor": training.policy.anchor or "",
            "season_length": s.season_length,
            "horizon": training.horizon,
            "backtest_windows": bt.n_windows,
            "methods": ",".join(training.router.methods_),
            "automl_trials": automl.get("n_trials", 0),
            "metric": s.router_metric,
        },
        metrics=metrics,
        tags={
            **window,
            "holdout_cutoff": str(cutoff.date()),
            "n_skus": str(demand["unique_id"].nunique()),
            "pipeline_run_id": run.run_id,
            "mode": training.policy.mode,
            "best_single": training.best_single,
        },
        holdout=holdout,
        artifacts={"report": report_dir},
        run_name=f"router-{run.run_id}",
    )
    run.save_json(
        "router.json",
        {**asdict(version), "targets": training.targets, "mode_scores": training.mode_scores,
         "mode": training.policy.mode, "best_single": training.best_single, "summary": evaluation.summary_line()},
    )  # fmt: skip
    progress("router", 3, 3)
    return version


def _metrics(training: Any, evaluation: Any) -> dict[str, float]:
    """Per method and per pattern, flattened for MLflow (metric names allow letters, digits, _-./ and space)."""
    out: dict[str, float] = {f"target_{k}": v for k, v in training.targets.items()}
    out.update({f"mode_mase_{k}": v for k, v in training.mode_scores.items()})
    out.update({f"shrink_{k:g}_score": v for k, v in training.shrink_scores.items()})
    for _, row in evaluation.overall.iterrows():
        m = _safe(row["method"])
        for col in ("mase", "smape", "owa", "mae", "rmse"):
            out[f"holdout_{col}_{m}"] = float(row[col])
    for _, row in evaluation.by_pattern.iterrows():
        out[f"pattern_{row['pattern']}_mase_{_safe(row['method'])}"] = float(row["mase"])
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))


def promote_step(run: Run, force: bool = False) -> reg.PromotionDecision:
    """Promote the challenger this run registered through the guardrails."""
    s = run.settings
    configure_mlflow(run.settings)
    registered = run.load_json("router.json")
    decision = reg.promote(registered["name"], registered["version"], s.promotion_tolerance, force)
    run.save_json("promotion.json", asdict(decision))
    return decision


def forecast_with_champion(run: Run) -> pd.DataFrame:
    """Forecast every SKU with the registry's champion and write ``stock_forecasts`` idempotently."""
    s = run.settings
    configure_mlflow(run.settings)
    champ = reg.version_by_alias(reg.MODEL_NAME, reg.CHAMPION)
    if champ is None:
        raise reg.PromotionError(f"{reg.MODEL_NAME} has no champion yet; run `stockml promote` first")
    model = mlflow.pyfunc.load_model(f"models:/{reg.MODEL_NAME}@{reg.CHAMPION}")
    demand, _ = load_demand(run)
    fc = model.predict(demand, params={"horizon": s.horizon})
    fc = fc.rename(columns={"unique_id": "sku"}).assign(model_version=f"{reg.MODEL_NAME}/v{champ.version}")
    fc.to_parquet(run.dir / "forecasts.parquet", index=False)
    run.write("stock_forecasts", fc)
    run.save_json("forecast.json", {"model_version": champ.version, "rows": len(fc)})
    from stockml.maintenance import publish_forecasts

    publish_forecasts(s, run.dir, run.run_id)
    return fc


def registry_summary(name: str = reg.MODEL_NAME) -> list[dict]:
    """Every version with its aliases and key tags (for `stockml models`)."""
    client = mlflow.MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases  # {alias: version}; search results omit them
    except mlflow.exceptions.MlflowException:
        return []
    rows = []
    for v in client.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "version": int(v.version),
                "aliases": ",".join(sorted(a for a, ver in aliases.items() if str(ver) == str(v.version))),
                "holdout_mase": v.tags.get("holdout_mase", ""),
                "data_end": v.tags.get("data_end", ""),
                "git_commit": v.tags.get("git_commit", "")[:10],
                "promotion": v.tags.get("promotion.reason", ""),
                "run_id": v.run_id,
            }
        )
    return sorted(rows, key=lambda r: r["version"])
