"""The orders step end to end on a demo catalogue: ``stockml run`` tunes the classical policies, trains the
RL agent, registers ``stockml-rl-agent`` and writes ``stock_orders``; a re-run replaces the rows; the
registered pyfunc gives the agent's own actions; ``stockml orders`` prints them. A short PPO training
(a few thousand steps) keeps it to about a minute; bench.rl_* measure the agent at full budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from rl_agent.agent import RLAgent
from rl_agent.catalogue import recommend
from rl_agent.features import OBS_NAMES
from stockml.cli import app
from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from stockml.run import Run
from stockml.settings import get_settings
from stockml.steps import orders as orders_module
from stockml.steps.orders import latest_forecasts, load_catalogue, orders_step, read_orders
from training.registry.names import RL_AGENT_MODEL

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(home / "source.db"))
    monkeypatch.setenv("STOCKML_METHODS", json.dumps(["Naive", "SES"]))
    monkeypatch.setenv("STOCKML_N_JOBS", "1")
    monkeypatch.setenv("STOCKML_RL_TRAIN_STEPS", "2048")
    monkeypatch.setenv("STOCKML_RL_SAMPLE_SKUS", "10")
    for var in ("STOCKML_ORDERS", "STOCKML_RL_HOLDOUT_WEEKS", "STOCKML_DEBUG", "STOCKML_RL_REGISTER"):
        monkeypatch.delenv(var, raising=False)
    gen = runner.invoke(app, ["demo-data", "--skus", "30", "--weeks", "130"])
    assert gen.exit_code == 0, gen.output
    return home


@pytest.mark.slow
def test_run_recommends_orders_registers_the_agent_and_rerun_replaces(home, monkeypatch):
    out = runner.invoke(app, ["run", "--run-id", "r1", "--no-router", "--windows", "1"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "in stockml_source" in text and "orders:" in text and "stockml-rl-agent v1" in text
    layout = HomeLayout(home).run("r1")
    report = json.loads(layout.orders.read_text())
    assert report["status"] == "written"
    settings = get_settings()
    run = Run(settings, run_id="r1")
    orders = read_orders(run)
    products = pd.read_parquet(layout.products).set_index("sku")
    assert orders is not None and len(orders) == report["skus"] == products.shape[0]
    priced = orders.dropna(subset=["order_qty"])
    assert len(priced) == report["skus"] - report["n_skipped"] > 0
    assert set(priced["policy"]) <= {"rl", "base_stock", "capped_base_stock", "s_S"}
    moq = products.loc[priced["sku"], "min_order_qty"].to_numpy(float)
    qty = priced["order_qty"].to_numpy(float)
    assert ((qty == 0) | (qty >= moq)).all(), "a positive order below the minimum order quantity"
    assert (priced["expected_cost_per_period"] > 0).all()
    # the agent's rows name its registered version; the classical rows name none
    assert (priced.loc[priced["policy"] == "rl", "model_version"] == "1").all()
    assert priced.loc[priced["policy"] != "rl", "model_version"].isna().all()

    # The registered version: costs on its tags, champion iff not above the best classical policy.
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    version = MlflowClient().get_model_version(RL_AGENT_MODEL, "1")
    rl_cost, classical = float(version.tags["holdout_cost_rl"]), float(version.tags["holdout_cost_best_classical"])
    aliases = MlflowClient().get_registered_model(RL_AGENT_MODEL).aliases
    assert ("champion" in aliases) == (rl_cost <= classical)
    assert version.tags["promotion.promoted"] == str(rl_cost <= classical)

    # The registered pyfunc answers with the agent's own actions.
    agent = RLAgent.load(layout.rl_agent_model)
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(rng.uniform(0, 2, (5, len(OBS_NAMES))), columns=list(OBS_NAMES))
    served = mlflow.pyfunc.load_model(f"models:/{RL_AGENT_MODEL}/1").predict(obs)
    np.testing.assert_allclose(served["action"].to_numpy(), agent.act(obs.to_numpy()), rtol=1e-6)

    # The agent's observation carries the rolling forecasts over every week, and the orders use the latest.
    assert report["forecasts"]["kind"] == "rolling" and report["forecasts"]["origins"] > 0
    catalogue, _, forecasts = load_catalogue(run)
    demand = pd.read_parquet(layout.demand)
    for sku, product in list(catalogue.products.items())[:3]:
        weeks = pd.to_datetime(demand[demand["unique_id"] == sku].sort_values("ds")["ds"]).to_numpy()
        made = forecasts[forecasts["unique_id"] == sku].set_index("ds")["yhat"]
        assert product.train_forecast is not None and product.holdout_forecast is not None
        # entry t of the catalogue's forecasts is the one made at the start of week t
        np.testing.assert_allclose(product.train_forecast[0][8:20], made.loc[weeks[8:20]].to_numpy(), err_msg=sku)
    states: list[pd.DataFrame] = []

    def recording(catalogue, state, *args, **kwargs):
        states.append(state)
        return recommend(catalogue, state, *args, **kwargs)

    monkeypatch.setattr(orders_module, "recommend", recording)
    # Re-running the task over the same data replaces its rows (one output key), never duplicates.
    again = orders_step(run)
    latest = latest_forecasts(forecasts).set_index("sku")
    given = states[0].set_index("sku").loc[latest.index]
    np.testing.assert_allclose(given["forecast_mean"], latest["forecast_mean"])
    assert again["status"] == "written"
    rerun = read_orders(run)
    assert len(rerun) == len(orders) and rerun["sku"].is_unique

    shown = runner.invoke(app, ["orders", "--sku", str(priced["sku"].iloc[0])])
    assert shown.exit_code == 0 and str(priced["sku"].iloc[0]) in shown.output
    unknown = runner.invoke(app, ["orders", "--sku", "NOPE"])
    assert unknown.exit_code != 0 and "no recommendation for SKU 'NOPE'" in unknown.output


def test_orders_are_skipped_with_the_reason_when_no_history_is_long_enough(home, monkeypatch):
    monkeypatch.setenv("STOCKML_RL_HOLDOUT_WEEKS", "200")
    out = runner.invoke(app, ["run", "--run-id", "short", "--no-router", "--windows", "1"])
    assert out.exit_code == 0, out.output
    report = json.loads(HomeLayout(home).run("short").orders.read_text())
    assert report["status"] == "skipped" and "lower STOCKML_RL_HOLDOUT_WEEKS" in report["reason"]
    assert "orders: skipped" in " ".join(out.output.split())
