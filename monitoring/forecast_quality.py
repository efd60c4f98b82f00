"""Forecast quality in service: MASE of served forecasts on the weeks observed since they were made.

Plain values in, a plain report out: the caller (``stockml.maintenance``, the monitoring DAG)
finds the frames; this module reads no files, settings or environment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.forecasting.metrics import mean_mase


def forecast_performance(forecasts: pd.DataFrame, demand: pd.DataFrame, threshold: float) -> dict:
    """MASE of ``forecasts`` on the observed weeks of ``demand`` (lag-1 in-sample scale).

    ``forecasts`` has sku (or unique_id), ds, yhat and optionally model_version; ``demand`` is
    the weekly demand (unique_id, ds, y) observed so far. Each SKU is scaled by its history
    before the first forecast week (:func:`training.forecasting.metrics.mean_mase`: a SKU whose
    scale is undefined is left out). ``degraded`` is true when that MASE exceeds ``threshold``;
    with no overlap yet (forecasts newer than the data) nothing can be judged and ``degraded``
    is false.
    """
    fc = forecasts.rename(columns={"sku": "unique_id"})
    fc = fc.assign(ds=pd.to_datetime(fc["ds"]))
    joined = fc.merge(demand, on=["unique_id", "ds"], how="inner")
    if joined.empty:
        return {"status": "no observed weeks inside the forecast horizon yet", "degraded": False, "weeks": 0}
    start = fc["ds"].min()
    mase = mean_mase(joined, demand[demand["ds"] < start])
    return {
        "status": "scored",
        "weeks": int(joined["ds"].nunique()),
        "skus": int(joined["unique_id"].nunique()),
        "mase": mase,
        "threshold": threshold,
        "degraded": bool(np.isfinite(mase) and mase > threshold),
        "model_version": str(fc["model_version"].iloc[0]) if "model_version" in fc else None,
    }
