"""The end-to-end pipeline: composes the steps of :mod:`stockml.steps`, nothing else.

ingest → classify → [tune the zoo] → backtest → [AutoML → router → register → promote] → forecast,
and, with ``lstm_register``, the LSTM on its own → register ``stockml-lstm`` → promote.
Each step is a function of a :class:`stockml.run.Run` that the CLI and the Airflow tasks also
call one at a time; this module only decides which ones run, in which order.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from stockml.run import Progress, Run, Stages, no_stages, noop_progress
from stockml.steps.backtest import backtest_reports, backtest_step
from stockml.steps.champion import forecast_with_champion
from stockml.steps.classify import classify_step
from stockml.steps.forecast import forecast_step
from stockml.steps.ingest import ingest
from stockml.steps.lstm import promote_lstm_step, train_lstm_step
from stockml.steps.orders import orders_step
from stockml.steps.promotion import promote_step
from stockml.steps.router import train_router_step
from stockml.steps.tuning import automl_step, tune_zoo_step
from training.forecasting.backtest import BacktestResult

log = logging.getLogger("stockml.pipeline")


@dataclass
class PipelineSummary:
    run_id: str
    run_dir: Path
    ingest: dict
    classes: pd.DataFrame
    backtest: BacktestResult
    forecasts: pd.DataFrame
    router: dict | None = None
    promotion: dict | None = None
    lstm: dict | None = None  # the stockml-lstm promotion decision, when lstm_register is on
    orders: dict | None = None  # the orders step's report (policies per pattern, the agent's promotion)

    def patterns_table(self) -> pd.DataFrame:
        c = self.classes
        t = c.groupby("pattern").agg(skus=("adi", "size"), mean_adi=("adi", "mean"), mean_cv2=("cv2", "mean"))
        t["A"] = c[c["abc"] == "A"].groupby("pattern").size()
        t["anomalous"] = c[c["is_anomaly"]].groupby("pattern").size()
        return t.fillna(0)

    def by_pattern_best(self) -> pd.DataFrame:
        t = self.backtest.summary_by(self.classes["pattern"])
        return t.sort_values("mase").groupby("pattern").head(1).set_index("pattern")


def can_train_router(result: BacktestResult) -> bool:
    """A router needs a window to learn on before the holdout window, and a catalogue to learn from."""
    return result.n_windows >= 2 and result.errors["unique_id"].nunique() >= 10


def run_pipeline(
    run: Run,
    progress: Progress = noop_progress,
    cutoff: str | None = None,
    router: bool = True,
    stages: Stages = no_stages,
) -> PipelineSummary:
    """ingest → classify → backtest → [AutoML → router → register → promote] → forecast.

    With ``router`` the forecasts come from the registry's champion (the new challenger if it
    passed the guardrails, else the champion already in place); without it, or when the
    catalogue is too small to train a router, from each SKU's best backtest method. ``stages``
    is entered around each step (bench.scale times and measures them through it).
    """
    progress("ingest", 0, 1)
    with stages("ingest"):  # load, validate, quarantine, weekly demand, written to the run folder
        report = ingest(run, cutoff)
    progress("ingest", 1, 1)
    progress("classify", 0, 1)
    with stages("classify"):
        classes = classify_step(run)
    progress("classify", 1, 1)
    if router:
        progress("zoo tuning", 0, 1)
        with stages("zoo tuning"):
            tune_zoo_step(run)
        progress("zoo tuning", 1, 1)
    with stages("backtest"):
        result = backtest_step(run, progress)
        backtest_reports(run, result, classes)
    routed = promotion = None
    if router and can_train_router(result):
        progress("automl", 0, 1)
        with stages("automl"):
            automl_step(run)
        progress("automl", 1, 1)
        with stages("router"):  # fit, register in MLflow, promotion guardrail
            train_router_step(run, progress)
            routed = run.load_json(run.layout.router)
            promotion = asdict(promote_step(run))
        progress("forecast", 0, 1)
        with stages("forecast"):  # the champion loaded from the registry, forecasts written back
            forecasts = forecast_with_champion(run)
        progress("forecast", 1, 1)
    else:
        if router:
            log.warning("too few SKUs or backtest windows to train a router; forecasting with per-SKU best methods")
        with stages("forecast"):
            forecasts = forecast_step(run, result, progress)
    lstm = None
    if run.settings.lstm_register:
        with stages("deep members"):
            train_lstm_step(run, progress)
            lstm = asdict(promote_lstm_step(run))
    orders = orders_step(run, progress, stages) if run.settings.orders else None
    return PipelineSummary(run.run_id, run.dir, report, classes, result, forecasts, routed, promotion, lstm, orders)
