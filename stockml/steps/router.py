"""Router: train it on the backtest, evaluate it on the holdout window, log and register a challenger."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from monitoring.drift import reference_features
from stockml.plots import plot_backtest_samples, plot_error_by_pattern
from stockml.run import Progress, Run, noop_progress
from stockml.steps.backtest import load_backtest, zoo_params
from stockml.steps.classify import load_classes
from stockml.steps.ingest import load_demand
from stockml.steps.registry import configure_mlflow, provenance_tags
from stockml.steps.tuning import pattern_rule
from training.evaluation.compare import CLASSICAL_RULE, classical_rule_forecasts, evaluate
from training.forecasting.backtest import window_scales
from training.forecasting.metrics import pointwise_errors
from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel, fit_members
from training.router.storage import save_router
from training.router.train import KEYS, ROUTER, train_router


def train_router_step(run: Run, progress: Progress = noop_progress) -> reg.RegisteredVersion:
    """Train the router on the backtest, evaluate it, log everything and register a challenger."""
    s = run.settings
    layout = run.layout
    progress("router", 0, 3)
    demand, products = load_demand(run)
    bt = load_backtest(run)
    classes = load_classes(run)
    automl = run.load_json(layout.automl) if layout.automl.exists() else {}
    params = {k: v for k, v in automl.get("best_params", {}).items() if k != "mode"}
    training = train_router(
        demand, bt, s.season_length, s.router_mode, params, s.router_top_k, pattern_rule(run), s.router_metric
    )
    progress("router", 1, 3)

    # The evaluation report: router vs every single method and the classical rule, on the holdout window.
    fc = training.holdout_forecasts
    rule_fc = classical_rule_forecasts(fc[fc["method"] != ROUTER], classes["pattern"])
    scales = window_scales(demand, fc[KEYS].drop_duplicates())
    errors = pd.concat([training.holdout_errors, pointwise_errors(rule_fc, scales)], ignore_index=True)
    evaluation = evaluate(pd.concat([fc, rule_fc], ignore_index=True), errors, classes, products, reference=ROUTER)
    report = layout.router_report
    report.root.mkdir(exist_ok=True)
    evaluation.to_html(report.html, title=f"stockml router evaluation · run {run.run_id}")
    for name, frame in evaluation.to_frames().items():
        frame.to_csv(report.table(name), index=False)
    sample = fc[fc["method"].isin([ROUTER, training.best_single, "TSB"])]
    plot_backtest_samples(sample, demand, classes, report.forecast_plot, methods=(ROUTER, training.best_single, "TSB"))
    plot_error_by_pattern(
        evaluation.by_pattern, report.error_by_pattern_plot, [ROUTER, training.best_single, CLASSICAL_RULE]
    )
    progress("router", 2, 3)

    cutoff = training.holdout_cutoff
    # The holdout is the last backtest window's SKUs: promotion figures then match the training ones.
    holdout = reg.split_holdout(demand, cutoff, training.horizon, list(fc["unique_id"].unique()))
    window = {"data_start": str(demand["ds"].min().date()), "data_end": str(demand["ds"].max().date())}
    # The members fitted on the whole catalogue travel with the model; saved as data (training.router.storage).
    members = fit_members(demand, training.router.methods_, s.season_length, training.horizon, zoo_params(run))
    model = RouterModel.from_training(training, {**window, "run_id": run.run_id}, zoo_params(run), members)
    save_router(model, layout.router_model)
    metrics = _metrics(training, evaluation)
    # The drift check's reference rows, as they were when the model was trained (a later revision of the
    # source's history must not move the baseline the champion is judged against).
    layout.drift_reference.mkdir(exist_ok=True)
    reference_features(demand, demand["ds"].max(), s.drift_window_weeks, s.season_length).to_parquet(
        layout.drift_reference / reg.DRIFT_REFERENCE_FILE
    )
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
            **provenance_tags(s),
            **window,
            "holdout_cutoff": str(cutoff.date()),
            "n_skus": str(demand["unique_id"].nunique()),
            "pipeline_run_id": run.run_id,
            "mode": training.policy.mode,
            "best_single": training.best_single,
        },
        holdout=holdout,
        artifacts={"report": report.root, reg.DRIFT_REFERENCE_DIR: layout.drift_reference},
        run_name=f"router-{run.run_id}",
    )
    run.save_json(
        layout.router,
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
