"""The optional price_promotions table through the real CLI on a SQLite source: ``stockml demo-data``
writes it, ``stockml validate`` turns it into weekly regressors beside the demand and quarantines
its bad rows, and a source without the table ingests as before."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from stockml.cli import app
from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from stockml.run import Run
from stockml.settings import Settings
from stockml.steps.ingest import adopt_demand, load_regressors
from training.data.store import read_output

SKUS, WEEKS, CUTOFF = 12, 80, "2026-11-22"
runner = CliRunner()


@pytest.fixture
def source(tmp_path, monkeypatch):
    db = tmp_path / "home" / "source.db"
    db.parent.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    for var in ("STOCKML_SOURCE_SCHEMA", "STOCKML_HORIZON", "STOCKML_PRICE_PROMOTIONS_QUERY"):
        monkeypatch.delenv(var, raising=False)
    res = runner.invoke(app, ["demo-data", "--skus", str(SKUS), "--weeks", str(WEEKS)])
    assert res.exit_code == 0, res.output
    engine = sa.create_engine(f"sqlite:///{db}")
    yield {"root": tmp_path, "engine": engine}
    engine.dispose()


def _validate(run_id: str) -> tuple[dict, Path]:
    res = runner.invoke(app, ["validate", "--run-id", run_id, "--cutoff", CUTOFF])
    assert res.exit_code == 0, res.output
    folder = HomeLayout(Path("home")).run(run_id).root
    return json.loads((folder / "ingest.json").read_text()), folder


def test_price_promotions_become_weekly_regressors_with_planned_weeks(source):
    report, folder = _validate("with")
    assert report["price_promotions"] == "present" and report["price_promotions_quarantined"] == 0
    reg = pd.read_parquet(folder / "weekly_regressors.parquet")
    demand = pd.read_parquet(folder / "demand.parquet")
    assert reg.columns.tolist() == ["unique_id", "ds", "unit_price", "on_promotion"]
    assert reg["ds"].dt.weekday.eq(0).all()
    assert reg["ds"].max() == demand["ds"].max() + pd.Timedelta(weeks=13)
    assert reg.loc[reg["ds"] > demand["ds"].max(), "on_promotion"].eq(1.0).any()
    assert set(reg["unique_id"]) == set(demand["unique_id"])
    # A training run that adopts the published demand gets the regressors with it.
    run = Run(Settings(), "adopter")
    adopt_demand(run)
    pd.testing.assert_frame_equal(load_regressors(run), reg)


def test_bad_price_rows_are_quarantined_in_the_output_table(source):
    with source["engine"].begin() as conn:
        conn.execute(sa.text("INSERT INTO price_promotions VALUES ('SKU-NOPE', '2026-11-02', 5.0, 0)"))
        conn.execute(sa.text("INSERT INTO price_promotions VALUES ('SKU-00001', '2026-11-03', -5.0, 0)"))
    report, _ = _validate("dirty")
    assert report["price_promotions_quarantined"] == 2
    q = read_output(source["engine"], "stock_quarantine", "dirty")
    prices = q[q["source_table"] == "price_promotions"]
    assert sorted(prices["reason"]) == ["negative unit_price", "unknown sku"]
    assert report["quarantined"] == len(q)


def test_a_source_without_the_table_ingests_as_before(source):
    with_table, folder_with = _validate("with")
    with source["engine"].begin() as conn:
        conn.execute(sa.text("DROP TABLE price_promotions"))
    without, folder = _validate("without")
    assert without["price_promotions"] == "absent"
    assert not (folder / "weekly_regressors.parquet").exists()
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / "demand.parquet"), pd.read_parquet(folder_with / "demand.parquet")
    )
    for key in ("skus", "demand_rows", "quarantined_by_reason", "last_week"):
        assert without[key] == with_table[key], key
    run = Run(Settings(), "adopter")
    adopt_demand(run)
    assert load_regressors(run) is None
