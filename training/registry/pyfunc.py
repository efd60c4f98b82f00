"""The MLflow pyfunc ``stockml-router``: history (unique_id, ds, y) in, routed forecasts out.

The trained :class:`~training.router.predict.RouterModel` is pickled as the model's one
artifact; this class only unpickles it and forwards ``predict``. So a model loaded from the
registry needs the installed ``stockml`` package and nothing from a source checkout.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT = "router_model"


class RouterPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour of the router; ``params={"horizon": h}`` sets the horizon per call."""

    def load_context(self, context: Any) -> None:
        with Path(context.artifacts[ARTIFACT]).open("rb") as fh:
            self.model = pickle.load(fh)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        horizon = params.get("horizon")
        return self.model.predict(model_input, horizon=int(horizon) if horizon else None)
