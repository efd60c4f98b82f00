"""The MLflow pyfuncs ``stockml-router`` and ``stockml-lstm`` (history in, forecasts out) and ``stockml-rl-agent``.

Logged as MLflow "models from code" (:mod:`training.registry.router_model_code` and
:mod:`training.registry.member_model_code` are the code files): the registered model holds that
small file and the model saved as data (:mod:`training.router.storage`,
:mod:`training.registry.member_model`), never a pickle of our classes, so a model registered today
loads after any refactor of this package that keeps the format's reader. Loading needs the
installed ``stockml`` package and nothing from a source checkout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT = "router"
MEMBER_ARTIFACT = "member"


def _horizon(params: dict | None) -> int | None:
    horizon = (params or {}).get("horizon")
    return int(horizon) if horizon else None


class RouterPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour of the router; ``params={"horizon": h}`` sets the horizon per call."""

    def load_context(self, context: Any) -> None:
        from training.router.storage import load_router, read_manifest

        folder = Path(context.artifacts[ARTIFACT])
        self.manifest = read_manifest(folder)
        self.model = load_router(folder)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.model.predict(model_input, horizon=_horizon(params))


class MemberPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour of one member registered on its own (the LSTM); ``params={"horizon": h}`` as the router's."""

    def load_context(self, context: Any) -> None:
        from training.registry.member_model import load_member_model, read_member_manifest

        folder = Path(context.artifacts[MEMBER_ARTIFACT])
        self.manifest = read_member_manifest(folder)
        self.model = load_member_model(folder)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.model.predict(model_input, horizon=_horizon(params))


class AgentPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc flavour of ``stockml-rl-agent``: normalised observations in, actions and targets out.

    Input columns are :data:`rl_agent.features.OBS_NAMES` (each product's state over its mean
    demand, see :mod:`rl_agent.features`); output ``action`` in [-1, 1], which
    :func:`rl_agent.features.target_from_action` turns into an order-up-to level for the product.
    """

    def load_context(self, context: Any) -> None:
        from rl_agent.agent import RLAgent

        self.agent = RLAgent.load(Path(context.artifacts["agent"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from rl_agent.features import OBS_NAMES

        missing = [c for c in OBS_NAMES if c not in model_input.columns]
        if missing:
            raise ValueError(f"the observation frame lacks columns {missing}")
        obs = model_input[list(OBS_NAMES)].to_numpy(dtype=float)
        return pd.DataFrame({"action": self.agent.act(obs)})
