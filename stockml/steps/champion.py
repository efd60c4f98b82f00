"""Forecast with the registry's champion, loaded by alias: what the pipeline writes is what serves."""

from __future__ import annotations

import mlflow
import pandas as pd

from stockml.maintenance import publish_forecasts
from stockml.run import Run
from stockml.steps.ingest import load_demand
from stockml.steps.registry import configure_mlflow
from training.registry import mlflow_registry as reg


def forecast_with_champion(run: Run) -> pd.DataFrame:
    """Forecast every SKU with the registry's champion and write ``stock_forecasts`` idempotently."""
    s = run.settings
    layout = run.layout
    configure_mlflow(run.settings)
    champ = reg.version_by_alias(reg.MODEL_NAME, reg.CHAMPION)
    if champ is None:
        raise reg.PromotionError(f"{reg.MODEL_NAME} has no champion yet; run `stockml promote` first")
    model = mlflow.pyfunc.load_model(f"models:/{reg.MODEL_NAME}@{reg.CHAMPION}")
    demand, _ = load_demand(run)
    fc = model.predict(demand, params={"horizon": s.horizon})
    fc = fc.rename(columns={"unique_id": "sku"}).assign(model_version=f"{reg.MODEL_NAME}/v{champ.version}")
    fc.to_parquet(layout.forecasts, index=False)
    run.write("stock_forecasts", fc)
    run.save_json(layout.forecast_meta, {"model_version": champ.version, "rows": len(fc)})
    publish_forecasts(s, run.run_id, layout.root)
    return fc
