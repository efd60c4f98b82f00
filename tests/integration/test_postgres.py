"""The same catalogue through SQLite and PostgreSQL hooks gives the same demand; the pipeline runs on Postgres.

Needs the server at 127.0.0.1:5432 (trust auth, user postgres, database ``test``); every
test is skipped with the reason when it cannot be reached. Each module run works in its
own schema ``stockml_test_<uuid8>``, dropped (CASCADE) at the end.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from services import PG_URI, throwaway_pg_schema, weekly_demand_through
from typer.testing import CliRunner

from stockml.cli import app
from stockml.connections import get_hook, sqlite_conn_json
from stockml.pipeline import run_pipeline
from stockml.run import Run
from stockml.settings import Settings
from training.data.demo import generate_catalogue
from training.data.store import read_output, write_source_tables

pytestmark = pytest.mark.postgres


SKUS, WEEKS, SEED = 40, 120, 3
CUTOFF = "2026-11-22"  # the demo history's last day: keeps validation clock-independent
METHOD_SUBSET = ["Naive", "Naive2", "SES", "TSB", "CrostonSBA"]


@pytest.fixture(scope="module")
def pg_schema():
    with throwaway_pg_schema("stockml_test") as (_, schema):
        yield schema


@pytest.fixture(scope="module")
def sources(pg_schema, tmp_path_factory):
    """The catalogue in SQLite (written directly) and in Postgres (written by ``stockml demo-data``)."""
    root = tmp_path_factory.mktemp("pg")
    db = root / "source.db"
    cat = generate_catalogue(SKUS, WEEKS, seed=SEED)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("STOCKML_HOME", str(root / "home"))
        mp.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(root / "home" / "default.db"))
        mp.delenv("STOCKML_SOURCE_SCHEMA", raising=False)
        sqlite_engine = get_hook(str(db)).get_sqlalchemy_engine()
        write_source_tables(sqlite_engine, cat.products, cat.movements)
        sqlite_engine.dispose()
        args = ["demo-data", "--skus", str(SKUS), "--weeks", str(WEEKS), "--seed", str(SEED)]
        res = CliRunner().invoke(app, [*args, "--target", PG_URI, "--schema", pg_schema])
        assert res.exit_code == 0, res.output
    return {"sqlite": db, "schema": pg_schema, "catalogue": cat}


@pytest.fixture
def pg_env(monkeypatch, tmp_path, sources):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_PG", PG_URI)
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SQLITE", sqlite_conn_json(sources["sqlite"]))
    return sources


def _weekly(hook, schema: str | None) -> tuple[pd.DataFrame, dict]:
    return weekly_demand_through(hook, schema, CUTOFF)


def test_hooks_are_the_provider_hooks(pg_env):
    assert type(get_hook("stockml_pg")).__name__ == "PostgresHook"
    assert type(get_hook("stockml_sqlite")).__name__ == "SqliteHook"


def test_postgres_holds_the_catalogue(pg_env):
    cat, schema = pg_env["catalogue"], pg_env["schema"]
    hook = get_hook("stockml_pg")
    assert hook.get_first(f"SELECT count(*) FROM {schema}.products")[0] == len(cat.products)
    assert hook.get_first(f"SELECT count(*) FROM {schema}.stock_movements")[0] == len(cat.movements)


def test_same_weekly_demand_from_sqlite_and_postgres(pg_env):
    pg_demand, pg_report = _weekly(get_hook("stockml_pg"), pg_env["schema"])
    lite_demand, lite_report = _weekly(get_hook("stockml_sqlite"), None)
    assert pg_demand["unique_id"].nunique() == SKUS
    assert len(pg_demand) > SKUS * 52
    pd.testing.assert_frame_equal(pg_demand, lite_demand)
    # Same rows quarantined for the same reasons on both backends.
    assert pg_report["quarantined_by_reason"] == lite_report["quarantined_by_reason"]
    assert pg_report["quarantined"] == 4
    for key in ("products_valid", "movements_valid", "first_date", "last_date"):
        assert pg_report[key] == lite_report[key], key


def test_pipeline_on_postgres_is_idempotent(pg_env, tmp_path):
    schema = pg_env["schema"]
    settings = Settings(
        home=tmp_path / "home",
        source_conn_id="stockml_pg",
        source_schema=schema,
        methods=METHOD_SUBSET,
        n_jobs=1,
    )
    run = Run(settings, "pg_run_1")
    summary = run_pipeline(run, cutoff=CUTOFF)
    engine = run.engine()
    assert engine.dialect.name == "postgresql"

    tables = ("stock_classes", "stock_forecasts", "stock_quarantine", "stock_weekly_demand", "stock_weekly_inventory")

    def counts(run_id: str | None) -> dict[str, int]:
        return {t: len(read_output(engine, t, run_id, schema)) for t in tables}

    classes = read_output(engine, "stock_classes", "pg_run_1", schema)
    forecasts = read_output(engine, "stock_forecasts", "pg_run_1", schema)
    assert len(classes) == SKUS and classes["sku"].is_unique
    assert forecasts.groupby("sku").size().eq(settings.horizon).all()
    assert set(forecasts["sku"]) == set(classes["sku"])
    assert forecasts[["yhat", "lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert len(forecasts) == len(summary.forecasts)
    before = counts("pg_run_1")
    assert before["stock_quarantine"] == 4
    demand = pd.read_parquet(run.layout.demand)
    assert before["stock_weekly_demand"] == before["stock_weekly_inventory"] == len(demand)
    inventory = read_output(engine, "stock_weekly_inventory", "pg_run_1", schema)
    assert inventory["censored"].map(type).eq(bool).all() and inventory["censored"].any()

    # The tables live in the test schema, not in public.
    inspector = sa.inspect(engine)
    assert set(tables) <= set(inspector.get_table_names(schema=schema))

    run_pipeline(Run(settings, "pg_run_1"), cutoff=CUTOFF)
    assert counts("pg_run_1") == before
    assert counts(None) == before  # replaced, never added

    saved = json.loads(run.layout.ingest_report.read_text())
    assert saved["skus"] == SKUS
    engine.dispose()


def test_price_promotions_read_from_postgres_and_absent_from_sqlite(pg_env):
    """demo-data wrote the optional table to Postgres (planned rows past the history); the SQLite copy
    has none, which is normal; a missing table is told apart on the real server too."""
    from training.data.demo_prices import demo_price_promotions
    from training.data.source import PRICE_PROMOTION_COLUMNS, SourceQueries, read_price_promotions
    from training.data.validate import validate_price_promotions
    from training.data.weekly import to_weekly_regressors

    cat, schema = pg_env["catalogue"], pg_env["schema"]
    pg = read_price_promotions(get_hook("stockml_pg"), SourceQueries.default(schema))
    expected = demo_price_promotions(cat, horizon=13)
    assert len(pg) == len(expected)
    good, quarantine, _ = validate_price_promotions(pg, set(cat.products["sku"]))
    assert len(quarantine) == 0
    weekly = to_weekly_regressors(good)
    assert weekly["ds"].max() > pd.Timestamp(CUTOFF)  # planned promotions known ahead
    ours = to_weekly_regressors(validate_price_promotions(expected, set(cat.products["sku"]))[0])
    pd.testing.assert_frame_equal(weekly, ours)
    assert read_price_promotions(get_hook("stockml_sqlite"), SourceQueries.default()) is None
    missing = f"SELECT {', '.join(PRICE_PROMOTION_COLUMNS)} FROM {schema}.no_such_table"
    assert (
        read_price_promotions(get_hook("stockml_pg"), SourceQueries.default(schema, price_promotions=missing)) is None
    )
