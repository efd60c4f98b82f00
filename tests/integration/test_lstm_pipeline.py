"""``stockml-lstm`` from the pipeline and the CLI: `stockml run --lstm` registers and promotes it beside
the router's steps, `stockml train-lstm` registers a second version judged by the same guardrail, and
without the setting nothing is registered. A small demo catalogue and a few training steps: seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from stockml.cli import app
from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from training.registry.names import LSTM_MODEL

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(home / "source.db"))
    monkeypatch.setenv("STOCKML_METHODS", json.dumps(["Naive", "SeasonalNaive"]))
    monkeypatch.setenv("STOCKML_N_JOBS", "1")
    monkeypatch.setenv("STOCKML_LSTM_MAX_STEPS", "3")
    for var in ("STOCKML_LSTM_REGISTER", "STOCKML_HORIZON", "STOCKML_BACKTEST_WINDOWS", "STOCKML_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    gen = runner.invoke(app, ["demo-data", "--skus", "12", "--weeks", "70"])
    assert gen.exit_code == 0, gen.output
    return home


def _versions(home: Path) -> dict[str, str]:
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{home / 'mlflow.db'}")
    client = MlflowClient()
    try:
        return {a: str(v) for a, v in client.get_registered_model(LSTM_MODEL).aliases.items()}
    except mlflow.exceptions.MlflowException:
        return {}


@pytest.mark.slow
def test_pipeline_and_cli_register_and_promote_the_lstm(home):
    off = runner.invoke(app, ["run", "--run-id", "off", "--no-router", "--windows", "1"])
    assert off.exit_code == 0, off.output
    assert not HomeLayout(home).run("off").lstm.exists()

    on = runner.invoke(app, ["run", "--run-id", "on", "--no-router", "--windows", "1", "--lstm"])
    assert on.exit_code == 0, on.output
    layout = HomeLayout(home).run("on")
    registered = json.loads(layout.lstm.read_text())
    assert registered["name"] == LSTM_MODEL and registered["holdout_mase"] > 0
    decision = json.loads(layout.promotion_of(LSTM_MODEL).read_text())
    assert decision["promoted"] and decision["reason"] == "first champion"
    assert (layout.lstm_model / "manifest.json").exists()
    assert "stockml-lstm v1: champion" in " ".join(on.output.split())
    assert _versions(home) == {"champion": "1"}
    version = MlflowClient().get_model_version(LSTM_MODEL, "1")
    assert version.tags["pipeline_run_id"] == "on" and version.tags["git_commit"]
    assert version.tags["data_end"] == registered["data_end"]

    again = runner.invoke(app, ["train-lstm", "--run-id", "cli", "--steps", "2"])
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "stockml-lstm v2 registered as challenger" in text
    decision = json.loads(HomeLayout(home).run("cli").promotion_of(LSTM_MODEL).read_text())
    assert decision["candidate"] == "2" and decision["previous_champion"] == "1"
    assert decision["candidate_score"] is not None and decision["champion_score"] is not None
    assert _versions(home).get("champion") == ("2" if decision["promoted"] else "1")
    models = runner.invoke(app, ["models", "--name", LSTM_MODEL])
    assert models.exit_code == 0 and "champion" in models.output


@pytest.mark.slow
def test_a_product_launched_just_before_the_holdout_does_not_stop_the_lstm(home):
    # Bug caught (10,000 demo SKUs): a product whose first sale is the holdout cutoff's week has one week
    # of history before it, and MemberModel.predict refused the whole holdout (HistoryError).
    import sqlite3

    import pandas as pd

    with sqlite3.connect(home / "source.db") as db:
        last = pd.to_datetime(
            db.execute("SELECT max(date) FROM stock_movements WHERE date <= date('now')").fetchone()[0]
        )
        columns = [r[1] for r in db.execute("PRAGMA table_info(products)")]
        row = dict(zip(columns, db.execute("SELECT * FROM products LIMIT 1").fetchone(), strict=True))
        row["sku"] = "SKU-00999"
        db.execute(
            f"INSERT INTO products ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})", list(row.values())
        )
        launch = last - pd.Timedelta(weeks=13)  # the cutoff's week (horizon 13): one week before the holdout
        for week in range(14):
            day = (launch + pd.Timedelta(weeks=week)).date().isoformat()
            db.execute(
                "INSERT INTO stock_movements (sku, date, qty_sold, qty_received, stock_on_hand) VALUES (?, ?, ?, ?, ?)",
                ("SKU-00999", day, 3, 5, 10),
            )
    on = runner.invoke(app, ["run", "--run-id", "new", "--no-router", "--windows", "1", "--lstm"])
    assert on.exit_code == 0, on.output
    layout = HomeLayout(home).run("new")
    demand = pd.read_parquet(layout.demand)
    assert (demand["unique_id"] == "SKU-00999").sum() == 14  # the premise: the new product got through ingest
    registered = json.loads(layout.lstm.read_text())
    version = MlflowClient().get_model_version(LSTM_MODEL, registered["version"])
    assert int(version.tags["n_skus"]) == demand["unique_id"].nunique() - 1  # scored without the new one
