"""The MLflow pyfunc ``stockml-router``: history (unique_id, ds, y) in, routed forecasts out.

Logged as MLflow "models from code" (:mod:`training.registry.router_model_code` is the code file):
the registered model holds that small file and the router saved as data
(:mod:`training.router.storage`), never a pickle of our classes, so a model registered today
loads after any refactor of this package that keeps the format's reader. Loading needs the
installed ``stockml`` package and nothing from a source checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT = "router"


class RouterPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour of the router; ``params={"horizon": h}`` sets the horizon per call."""

    def load_context(self, context: Any) -> None:
        from training.router.storage import load_router, read_manifest

        folder = Path(context.artifacts[ARTIFACT])
        self.manifest = read_manifest(folder)
        self.model = load_router(folder)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        params = params or {}
        horizon = params.get("horizon")
        return self.model.predict(model_input, horizon=int(horizon) if horizon else None)
