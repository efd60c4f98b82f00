"""Helpers of the serving system tests (test_serving, test_serving_ops, test_serving_bandit).

Starting and stopping ``bentoml serve`` is in :mod:`bench.serving_stack` (the benchmark uses it too).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from bench.serving_stack import ISOLATE_VARS, SERVICE, serve, stop, wait_ready
from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel
from training.router.train import train_router

__all__ = [
    "START_TIMEOUT_S",
    "assert_xlsx_matches_csv",
    "auth",
    "bentoml_serve",
    "champion_registry",
    "demand_csv",
    "forecast_items",
    "register",
    "service_env",
    "train_and_configure",
    "wait_ready",
]

START_TIMEOUT_S = 240


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def forecast_items(demand: pd.DataFrame, n: int) -> list[dict]:
    """The ``/forecast`` items of the first ``n`` SKUs of ``demand``, with their whole history."""
    return [
        {"sku": str(sku), "history": [{"ds": str(d.date()), "y": float(y)} for d, y in zip(g.ds, g.y, strict=True)]}
        for sku, g in list(demand.groupby("unique_id"))[:n]
    ]


def demand_csv(demand: pd.DataFrame, n: int) -> bytes:
    """A ``/batch`` upload (CSV sku, ds, y) of the first ``n`` SKUs of ``demand``."""
    skus = list(demand["unique_id"].drop_duplicates())[:n]
    part = demand[demand["unique_id"].isin(skus)]
    out = pd.DataFrame({"sku": part["unique_id"], "ds": part["ds"].dt.strftime("%Y-%m-%d"), "y": part["y"]})
    return out.to_csv(index=False).encode()


def register(model: RouterModel, holdout, label: str) -> reg.RegisteredVersion:
    return reg.log_router(
        model,
        params={"label": label},
        metrics={"holdout_mase_router": 1.0},
        tags={"label": label},
        holdout=holdout,
        run_name=label,
    )


def train_and_configure(router_data: dict, tmp: Path, experiment: str) -> tuple[str, RouterModel, pd.DataFrame]:
    """Train a router on ``router_data`` and point the registry at a fresh SQLite one under ``tmp``.

    Returns the tracking URI, the model and its holdout (nothing is registered yet).
    """
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    model = RouterModel.from_training(t)
    skus = list(t.holdout_forecasts["unique_id"].unique())[:10]
    holdout = reg.split_holdout(router_data["demand"], t.holdout_cutoff, t.horizon, skus)
    reg.configure(uri, experiment, tmp / "artifacts")
    return uri, model, holdout


@contextmanager
def champion_registry(router_data: dict, tmp: Path, experiment: str) -> Iterator[str]:
    """A fresh SQLite registry under ``tmp`` whose ``stockml-router`` v1 (a router trained on
    ``router_data``) is the champion; yields its tracking URI. This process's MLflow URIs are put back
    on exit (the service under test reads the registry itself, through its settings)."""
    import mlflow

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        uri, model, holdout = train_and_configure(router_data, tmp, experiment)
        assert register(model, holdout, "v1").version == "1"
        assert reg.promote(version="1").promoted
        yield uri
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def service_env(tmp: Path, uri: str, api_keys: str, *, isolate: tuple[str, ...] = ISOLATE_VARS, **extra: str) -> dict:
    """The environment of a service under ``tmp`` on the registry ``uri``, isolated from the caller's settings."""
    env = {
        **os.environ,
        "STOCKML_HOME": str(tmp / "home"),
        "STOCKML_MLFLOW_TRACKING_URI": uri,
        "STOCKML_AUTH__API_KEYS": api_keys,
        "STOCKML_AUTH__RATE_LIMIT_PER_S": "1000",
        **extra,
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    for var in isolate:
        env.pop(var, None)
    return env


@contextmanager
def bentoml_serve(env: dict, log_path: Path, port_flag: str = "--port") -> Iterator[tuple[subprocess.Popen, str]]:
    """The production service under ``bentoml serve`` (output to ``log_path``): its process and URL; stopped on exit."""
    with log_path.open("w") as log:
        proc, url = serve(SERVICE, env, log, port_flag=port_flag)
        try:
            yield proc, url
        finally:
            stop(proc)


def assert_xlsx_matches_csv(xlsx: bytes, csv_bytes: bytes) -> None:
    """The xlsx download holds the CSV's table: same columns, rows and values; ``ds`` as Excel dates."""
    import openpyxl

    from serving.bentos.batch import RESULT_COLUMNS

    sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    assert sheet.title == "forecasts" and sheet.freeze_panes == "A2"
    assert sheet["B2"].is_date and sheet["B2"].number_format.upper() == "YYYY-MM-DD"
    want = pd.read_csv(io.BytesIO(csv_bytes), dtype={"sku": str, "model_version": str})
    got = pd.read_excel(io.BytesIO(xlsx), sheet_name="forecasts", dtype={"sku": str, "model_version": str})
    assert list(got.columns) == list(want.columns) == RESULT_COLUMNS
    got["ds"] = got["ds"].dt.strftime("%Y-%m-%d")
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def register_agent_champion(uri: str, tmp: Path) -> str:
    """Register a tiny trained RL agent as ``stockml-rl-agent`` champion on the registry ``uri``, answering
    for every demand pattern; returns its version. The held-out costs it is registered with are set so
    the guardrail passes: this fixture is about serving the champion (the guardrail on real costs is
    tested in tests/integration/test_orders_step.py). MLflow's URIs are put back."""
    import mlflow
    import numpy as np

    from rl_agent.agent import AgentConfig, RLAgent
    from rl_agent.dynamics import CostConfig, InventorySpec
    from rl_agent.env import ProductCase
    from rl_agent.features import DemandProfile
    from training.registry import agent_registry

    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    history = np.random.default_rng(0).poisson(3, 120).astype(float)
    spec = InventorySpec(CostConfig(holding=0.05, penalty=2.0), lead_time=2, min_order_qty=1, max_order_qty=80)
    agent = RLAgent.train(
        [ProductCase(spec, DemandProfile.of(history), history=history, name="A")],
        256,
        AgentConfig(seed=0, n_envs=4, n_steps=32, batch_size=64),
    )
    folder = tmp / "rl_agent"
    agent.save(folder)
    patterns = {p: "rl" for p in ("smooth", "erratic", "intermittent", "lumpy")}
    (folder / "pattern_policy.json").write_text(json.dumps(patterns))
    try:
        agent_registry.configure(uri, tmp / "mlflow-artifacts")  # never ./mlruns in the working tree
        version = agent_registry.log_agent(folder, costs={"rl": 1.0, "base_stock": 2.0}, tags={"fixture": "1"})
        assert agent_registry.promote_agent(version.version).promoted
        return version.version
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
