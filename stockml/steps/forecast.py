"""Forecast without a router: each SKU with the method that won its backtest."""

from __future__ import annotations

import pandas as pd

from stockml.run import Progress, Run, noop_progress
from stockml.steps.backtest import engine_session, engine_zoo, load_backtest, zoo_params
from stockml.steps.classify import load_classes
from stockml.steps.ingest import load_demand, load_regressors
from training.forecasting.backtest import BacktestResult, add_empirical_intervals, residual_quantiles
from training.forecasting.metrics import insample_scales

MODEL_VERSION = "zoo-selection-v1"


def forecast_step(run: Run, result: BacktestResult | None = None, progress: Progress = noop_progress) -> pd.DataFrame:
    """Forecast each SKU with the method that won its backtest (its pattern's winner if too short)."""
    s = run.settings
    layout = run.layout
    demand, _ = load_demand(run)
    result = result or load_backtest(run)
    patterns = load_classes(run)["pattern"]
    chosen = result.best_method_per_sku()
    by_pattern = result.best_method_by(patterns)
    fallback = result.best_method()
    ids = demand["unique_id"].unique()
    selection = pd.Series(
        [chosen.get(u) or by_pattern.get(patterns.get(u), fallback) for u in ids], index=ids, name="method"
    )
    frames = []
    groups = list(selection.groupby(selection))
    # Every chosen member is fitted on the whole catalogue (a global one learns across it), then
    # forecasts the SKUs that chose it from their own history.
    # With STOCKML_ENGINE=spark the members' forecasts run on Spark (the zoo takes and gives pandas frames).
    with engine_session(s) as spark:
        zoo = engine_zoo(spark, methods=sorted(selection.unique()), season_length=s.season_length,
                         n_jobs=s.n_jobs, params=zoo_params(run), horizon=s.horizon,
                         regressors=load_regressors(run)).fit(demand)  # fmt: skip
        for i, (method, members) in enumerate(groups):
            progress("forecast", i, len(groups))
            panel = demand[demand["unique_id"].isin(members.index)]
            frames.append(zoo.predict(s.horizon, panel=panel, methods=[method]))
    progress("forecast", len(groups), len(groups))
    fc = pd.concat(frames, ignore_index=True)
    quantiles = residual_quantiles(result, patterns)
    fc = add_empirical_intervals(fc, quantiles, insample_scales(demand), patterns)
    fc = fc.rename(columns={"unique_id": "sku"}).assign(model_version=MODEL_VERSION)
    fc.to_parquet(layout.forecasts, index=False)
    run.write("stock_forecasts", fc)
    selection.rename_axis("sku").to_frame().to_csv(layout.selection)
    return fc
