"""The ingest's weekly demand and inventory as output tables: written by the ingest step, replaced
per output key on re-run (never duplicated), types kept (dates, booleans, NULL on hand) on SQLite and
PostgreSQL; the inventory is also a run artifact that a training run adopts with the demand."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from stockml.connections import get_hook, sqlite_conn_json
from stockml.run import Run
from stockml.settings import Settings
from stockml.steps.ingest import adopt_demand, ingest, load_inventory
from training.data.demo import generate_catalogue
from training.data.store import OutputKey, latest_key, latest_output, read_output, write_output, write_source_tables

CUTOFF = "2026-11-22"


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STOCKML_SOURCE_SCHEMA", raising=False)
    db = tmp_path / "source.db"
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    engine = get_hook(str(db)).get_sqlalchemy_engine()
    cat = generate_catalogue(30, 80, seed=5)
    write_source_tables(engine, cat.products, cat.movements)
    yield engine
    engine.dispose()


def test_ingest_publishes_weekly_demand_and_inventory_replaced_on_rerun(source):
    run = Run(Settings(), "r1", pipeline="stock_ingest")
    report = ingest(run, CUTOFF)
    demand, inventory = pd.read_parquet(run.layout.demand), load_inventory(run)
    assert report["inventory"]["rows"] == len(inventory) == len(demand)
    assert report["inventory"]["censored_weeks"] == int(inventory["censored"].sum()) > 0
    published = read_output(source, "stock_weekly_demand").sort_values(["sku", "ds"], ignore_index=True)
    assert len(published) == len(demand) and set(published["run_id"]) == {"r1"}
    assert set(published["cutoff_week"]) == {"2026-11-16"} and set(published["pipeline"]) == {"stock_ingest"}
    assert published["y"].tolist() == demand["y"].tolist()
    stock = read_output(source, "stock_weekly_inventory").sort_values(["sku", "ds"], ignore_index=True)
    assert stock["censored"].tolist() == inventory["censored"].tolist()
    assert stock["receipts"].tolist() == inventory["receipts"].tolist()

    ingest(Run(Settings(), "r2", pipeline="stock_ingest"), CUTOFF)  # same data, another run id
    for table, before in (("stock_weekly_demand", published), ("stock_weekly_inventory", stock)):
        again = read_output(source, table)
        assert len(again) == len(before) and set(again["run_id"]) == {"r2"}, table
        assert not again.duplicated(["pipeline", "cutoff_week", "sku", "ds"]).any(), table

    trainer = Run(Settings(), "t1", pipeline="stock_training")
    adopt_demand(trainer, run.dir)
    pd.testing.assert_frame_equal(load_inventory(trainer), inventory)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'out.db'}")
        yield engine, None
        engine.dispose()
    else:
        from services import throwaway_pg_schema

        with throwaway_pg_schema("stockml_weekly") as (engine, schema):
            yield engine, schema


def _inventory(skus: list[str]) -> pd.DataFrame:
    weeks = pd.to_datetime(["2026-11-09", "2026-11-16"])
    return pd.DataFrame(
        {
            "sku": [s for s in skus for _ in weeks],
            "ds": list(weeks) * len(skus),
            "on_hand": [float("nan"), 3.0] * len(skus),
            "receipts": [0.0, 5.0] * len(skus),
            "censored": [True, False] * len(skus),
        }
    )


def test_weekly_tables_are_keyed_by_the_data_on_sql_stores(db):
    engine, schema = db
    key = OutputKey("stock_ingest", "2026-11-16")
    assert write_output(engine, "stock_weekly_inventory", _inventory(["A", "B", "C"]), key, "a", schema) == 6
    assert write_output(engine, "stock_weekly_inventory", _inventory(["A", "B"]), key, "b", schema) == 4
    rows = read_output(engine, "stock_weekly_inventory", None, schema).sort_values(["sku", "ds"], ignore_index=True)
    assert len(rows) == 4 and set(rows["run_id"]) == {"b"}
    assert [str(d) for d in rows["ds"][:2]] == ["2026-11-09", "2026-11-16"]
    assert rows["censored"].tolist() == [True, False, True, False]
    assert rows["on_hand"].isna().tolist() == [True, False, True, False]
    demand = pd.DataFrame({"sku": ["A", "A"], "ds": pd.to_datetime(["2026-11-09", "2026-11-16"]), "y": [2.0, 0.0]})
    write_output(engine, "stock_weekly_demand", demand, key, "b", schema)
    write_output(engine, "stock_weekly_demand", demand, key, "c", schema)
    assert read_output(engine, "stock_weekly_demand", None, schema)["y"].tolist() == [2.0, 0.0]


def test_latest_output_is_the_newest_cutoff_and_the_last_writer(db):
    engine, schema = db
    assert latest_output(engine, "stock_weekly_demand", schema) is None  # no table yet
    demand = pd.DataFrame({"sku": ["A"], "ds": pd.to_datetime(["2026-11-09"]), "y": [1.0]})
    write_output(engine, "stock_weekly_demand", demand, OutputKey("stock_ingest", "2026-11-09"), "a", schema)
    write_output(engine, "stock_weekly_demand", demand.assign(y=2.0), OutputKey("cli", "2026-11-16"), "b", schema)
    write_output(
        engine, "stock_weekly_demand", demand.assign(y=3.0), OutputKey("stock_ingest", "2026-11-16"), "c", schema
    )
    assert latest_key(engine, "stock_weekly_demand", schema) == OutputKey("stock_ingest", "2026-11-16")
    latest = latest_output(engine, "stock_weekly_demand", schema)
    assert latest is not None and latest["y"].tolist() == [3.0] and latest["run_id"].tolist() == ["c"]
