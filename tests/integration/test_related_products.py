"""Related products through the real hooks: ingest without order_lines (normal) and with them,
``stock_related`` replaced on re-run (SQLite and PostgreSQL), ``stockml related`` and the service's
reader of the source connection."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from stockml.cli import app
from stockml.connections import get_hook, sqlite_conn_json
from stockml.run import Run
from stockml.settings import Settings
from stockml.steps.ingest import ingest
from stockml.steps.related import SKIPPED, status_line
from training.data.demo import generate_catalogue
from training.data.demo_orders import generate_order_lines
from training.data.order_lines import read_order_lines, write_order_lines
from training.data.related_store import latest_related
from training.data.store import OutputKey, read_output, write_output, write_source_tables

CUTOFF = "2026-11-22"


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STOCKML_SOURCE_SCHEMA", raising=False)
    db = tmp_path / "source.db"
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    cat = generate_catalogue(60, 104, seed=3)
    engine = get_hook(str(db)).get_sqlalchemy_engine()
    write_source_tables(engine, cat.products, cat.movements)
    yield {"engine": engine, "catalogue": cat, "home": tmp_path / "home"}
    engine.dispose()


def _ingest(run_id: str) -> tuple[Run, dict]:
    run = Run(Settings(), run_id)
    return run, ingest(run, CUTOFF)


def test_a_source_without_order_lines_ingests_and_the_step_is_skipped(source, caplog):
    with caplog.at_level("INFO", logger="stockml.pipeline"):
        _, report = _ingest("r1")
    assert report["related"] == {"status": "skipped", "reason": "the source has no order_lines table"}
    assert f"related products: {SKIPPED}" in caplog.text
    assert status_line(report) == f"related products: {SKIPPED}"
    assert report["quarantined"] == 4 and report["skus"] > 0
    assert latest_related(source["engine"]) is None  # nothing written, no table made


def test_order_lines_give_stock_related_replaced_on_rerun(source):
    cat = source["catalogue"]
    lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end, dirty_rows=True)
    write_order_lines(source["engine"], lines)
    _, report = _ingest("r1")
    rel = report["related"]
    assert rel["status"] == "written" and rel["rules"] > 0 and rel["order_lines_quarantined"] == 3
    assert report["quarantined"] == 7 and report["quarantined_by_reason"]["order_lines: unknown sku"] == 1
    q = read_output(source["engine"], "stock_quarantine")
    assert (q["source_table"] == "order_lines").sum() == 3
    first = read_output(source["engine"], "stock_related")
    assert len(first) == rel["rules"] and set(first["run_id"]) == {"r1"}
    planted = {frozenset((p["antecedent"], p["consequent"])) for p in truth["planted_rules"]}
    assert planted <= {frozenset(p) for p in zip(first["sku"], first["related_sku"], strict=True)}
    _ingest("r2")  # same data, another run id: the key's rows are replaced, not added
    again = read_output(source["engine"], "stock_related")
    assert len(again) == len(first) and set(again["run_id"]) == {"r2"}
    assert not again.duplicated(["pipeline", "cutoff_week", "sku", "related_sku"]).any()
    assert "related products: " in status_line(report) and "rules for" in status_line(report)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    import sqlalchemy as sa

    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'out.db'}")
        yield engine, None
        engine.dispose()
    else:
        from services import throwaway_pg_schema

        with throwaway_pg_schema("stockml_related") as (engine, schema):
            yield engine, schema


def _rules(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"sku": [f"S{i}" for i in range(n)], "related_sku": "X", "support": 0.01, "confidence": 0.5, "lift": 4.0}
    )


def test_stock_related_is_keyed_by_the_data_on_sql_stores(db):
    engine, schema = db
    key, newer = OutputKey("stock_ingest", "2026-11-16"), OutputKey("stock_ingest", "2026-11-23")
    assert write_output(engine, "stock_related", _rules(5), key, "a", schema) == 5
    assert write_output(engine, "stock_related", _rules(3), key, "b", schema) == 3  # replaces the key
    rows = read_output(engine, "stock_related", None, schema)
    assert len(rows) == 3 and set(rows["run_id"]) == {"b"}
    write_output(engine, "stock_related", _rules(2), newer, "c", schema)
    latest = latest_related(engine, schema)
    assert latest is not None and len(latest) == 2 and set(latest["cutoff_week"]) == {"2026-11-23"}


@pytest.mark.postgres
def test_order_lines_absent_then_present_on_postgres():
    from services import throwaway_pg_schema

    class PgDfHook:  # what PostgresHook offers the reader
        conn_type = "postgres"

        def __init__(self, engine):
            self.engine = engine

        def get_df(self, sql, parameters=None, **kwargs):
            with self.engine.connect() as conn:
                return pd.read_sql(sql, conn)

    with throwaway_pg_schema("stockml_orders") as (engine, schema):
        hook = PgDfHook(engine)
        assert read_order_lines(hook, schema) is None
        lines = pd.DataFrame(
            {"order_id": ["O1", "O1"], "date": ["2026-11-02"] * 2, "customer_id": "C1", "sku": ["A", "B"], "qty": 1.0}
        )
        write_order_lines(engine, lines, schema)
        got = read_order_lines(hook, schema)
        assert got is not None and len(got) == 2


def test_cli_related_and_the_service_reader(source):
    cat = source["catalogue"]
    lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
    write_order_lines(source["engine"], lines)
    _ingest("r1")
    runner = CliRunner()
    a = truth["planted_rules"][0]["antecedent"]
    b = truth["planted_rules"][0]["consequent"]
    res = runner.invoke(app, ["related", a])
    assert res.exit_code == 0, res.output
    assert f"Bought with {a}" in res.output and b in res.output and "confidence" in res.output
    lonely = next(s for s in cat.products["sku"] if s not in set(read_output(source["engine"], "stock_related")["sku"]))
    res = runner.invoke(app, ["related", lonely])
    assert res.exit_code == 0 and "has no related products" in res.output
    res = runner.invoke(app, ["related", "SKU-NOPE"])
    assert res.exit_code == 2 and "unknown SKU 'SKU-NOPE'" in res.output

    from serving.bentos.related import RelatedLookup

    related = RelatedLookup.from_settings(Settings()).get()
    assert related[a][0]["sku"] == b and set(related[a][0]) == {"sku", "confidence", "lift"}


def test_cli_related_without_stock_related(source):
    res = CliRunner().invoke(app, ["related", "SKU-00001"])
    assert res.exit_code == 2 and "stock_related is empty" in res.output


def test_demo_data_writes_order_lines_and_the_planted_rules(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    db = tmp_path / "demo.db"
    res = CliRunner().invoke(app, ["demo-data", "--skus", "40", "--weeks", "60", "--target", str(db)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "order lines" in out and "planted product associations" in out
    truth = json.loads((tmp_path / "home" / "demo_ground_truth.json").read_text())
    assert len(truth["order_lines"]["planted_rules"]) == 1 and truth["skus"]
    lines = read_order_lines(get_hook(str(db)))
    assert lines is not None and len(lines) == truth["order_lines"]["lines"]


def test_stock_ingest_dag_writes_one_set_of_related_products_whatever_the_rerun(
    dagbag, airflow_db, tmp_path, monkeypatch
):
    import pendulum
    import sqlalchemy as sa
    from airflow_runs import FAST_TRAINING, clear_and_rerun, one_set

    home = tmp_path / "home"
    home.mkdir()
    db = home / "source.db"
    monkeypatch.setenv("STOCKML_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    for k, v in FAST_TRAINING.items():
        monkeypatch.setenv(k, v)
    engine = sa.create_engine(f"sqlite:///{db}")
    cat = generate_catalogue(30, 110, seed=5)
    write_source_tables(engine, cat.products, cat.movements)
    lines, _ = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
    write_order_lines(engine, lines)
    dag = dagbag.dags["stock_ingest"]
    first = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))
    assert first.state == "success"
    n = len(read_output(engine, "stock_related"))
    assert n > 0
    one_set(engine, "stock_related", None, "stock_ingest", n, f"stock_ingest__{first.run_id}")
    assert clear_and_rerun(dag, first.run_id, ["ingest"]).state == "success"
    one_set(engine, "stock_related", None, "stock_ingest", n, f"stock_ingest__{first.run_id}")
    again = dag.test(logical_date=pendulum.datetime(2026, 11, 23, tz="UTC"))
    assert again.state == "success" and again.run_id != first.run_id
    one_set(engine, "stock_related", None, "stock_ingest", n, f"stock_ingest__{again.run_id}")
    engine.dispose()
