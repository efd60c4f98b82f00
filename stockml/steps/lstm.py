"""The LSTM on its own: train it, score it on the holdout, register it as ``stockml-lstm`` and promote it.

DESIGN.md names the LSTM as a model of its own in the registry, beside the router (which may also
use it as a member). The network is trained on the history up to the holdout cutoff (the last
``horizon`` weeks are held out) and registered as trained: it never saw its holdout, so the
holdout score logged with it, and the guardrail's comparison with the champion on that holdout,
are out of sample for the candidate. A global network forecasts from whatever history it is
given, so it serves from the latest weeks all the same. Off unless ``lstm_register`` is set.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from stockml.run import Progress, Run, noop_progress
from stockml.steps.backtest import zoo_params
from stockml.steps.ingest import load_demand
from stockml.steps.promotion import promote, record_decision
from stockml.steps.registry import configure_mlflow, provenance_tags
from training.forecasting.zoo import ModelZoo
from training.registry import mlflow_registry as reg
from training.registry.member_model import MIN_WEEKS, MemberModel, save_member_model
from training.registry.names import LSTM_MODEL

METHOD = "LSTM"


def train_lstm_step(run: Run, progress: Progress = noop_progress) -> reg.RegisteredVersion:
    """Fit the LSTM on the history before the holdout, score it there, log and register a challenger."""
    s = run.settings
    progress("lstm", 0, 2)
    demand, _ = load_demand(run)
    h = s.horizon
    cutoff = demand["ds"].max() - pd.Timedelta(weeks=h)
    # Scored on the SKUs with the history a member forecasts from: a product launched in the last
    # ``h`` weeks has too few weeks before the holdout (seen at 10,000 demo SKUs: one had a week).
    weeks = demand[demand["ds"] <= cutoff].groupby("unique_id").size()
    history, actuals = reg.split_holdout(demand, cutoff, h, list(weeks.index[weeks >= MIN_WEEKS]))
    if history.empty or actuals.empty:
        raise ValueError(f"the LSTM needs history before its {h}-week holdout; the demand covers too few weeks")
    actuals = actuals[actuals["unique_id"].isin(history["unique_id"].unique())]
    params = {**zoo_params(run).get(METHOD, {}), "max_steps": s.lstm_max_steps}
    zoo = ModelZoo([METHOD], s.season_length, params={METHOD: params}, horizon=h).fit(history)
    window = {"data_start": str(history["ds"].min().date()), "data_end": str(cutoff.date())}
    model = MemberModel(zoo, {**window, "holdout_end": str(demand["ds"].max().date()), "run_id": run.run_id})
    score = reg.forecast_score(model.predict(history, h), history, actuals)
    progress("lstm", 1, 2)
    save_member_model(model, run.layout.lstm_model)
    reg.configure(s.tracking_uri, LSTM_MODEL, s.artifact_root)
    member = zoo.fitted_[METHOD]
    version = reg.log_member(
        model,
        name=LSTM_MODEL,
        params={**member.params(), "season_length": s.season_length},
        metrics={"holdout_mase": score},
        tags={
            **provenance_tags(s),
            **window,
            "holdout_cutoff": str(cutoff.date()),
            "n_skus": str(history["unique_id"].nunique()),
            "pipeline_run_id": run.run_id,
        },
        holdout=(history, actuals),
        run_name=f"lstm-{run.run_id}",
    )
    configure_mlflow(s)  # back to the router's experiment for the steps after this one
    run.save_json(run.layout.lstm, {**asdict(version), "holdout_mase": score, **window})
    progress("lstm", 2, 2)
    return version


def promote_lstm_step(run: Run, force: bool = False) -> reg.PromotionDecision:
    """Promote the LSTM this run registered through the same guardrail as the router."""
    registered = run.load_json(run.layout.lstm)
    decision = promote(run.settings, registered["name"], registered["version"], force=force)
    record_decision(run, decision)
    return decision
