"""Hive (HiveServer2) as source and output store, against Spark's Thrift server.

One Spark Thrift server (``tests/support/hive_server.py``: NOSASL on 127.0.0.1, a free port,
warehouse and metastore in a temp folder) serves the module; the tests reach it only
through Airflow's ``HiveServer2Hook`` via the connection ``stockml_hive`` /
``stockml_source``. The same 40-SKU catalogue goes into SQLite and into a Hive database
``stockml_it_<uuid8>``; both must give the same source frames and weekly demand, and
``ingest`` on Hive must quarantine the dirty rows into Hive's ``stock_quarantine``
idempotently (a run id is a partition, overwritten on re-run).

Skipped, with the reason, when ``java`` is not on PATH.
"""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest
from hive_server import conn_json, java_missing, start_hive_server
from services import canonical_demand, weekly_demand_through

from stockml.connections import get_hook, sqlite_conn_json
from stockml.run import Run, safe_run_id
from stockml.settings import Settings
from stockml.steps.classify import classify_step
from stockml.steps.ingest import ingest
from training.data.demo import generate_catalogue
from training.data.hive_store import HiveStore, literal
from training.data.source import SourceQueries, read_source
from training.data.store import prune_quarantine, read_output, write_output, write_source_tables

pytestmark = [pytest.mark.slow, pytest.mark.hive, pytest.mark.timeout(600)]

SKUS, WEEKS, SEED = 40, 120, 3
CUTOFF = "2026-11-22"  # the demo history's last day: keeps validation clock-independent
DIRTY_REASONS = {"unknown sku", "future date", "negative qty_sold", "duplicated (sku, date)"}
OUTPUTS = ("stock_classes", "stock_forecasts", "stock_quarantine")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def hive(tmp_path_factory):
    """The Thrift server, with ``AIRFLOW_CONN_STOCKML_HIVE`` pointing at it for the module."""
    reason = java_missing()
    if reason:
        pytest.skip(reason)
    server = start_hive_server(tmp_path_factory.mktemp("hive"), timeout=180, cores=2, driver_memory="1g")
    TIMINGS["server_start_s"] = round(server.start_seconds, 1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_STOCKML_HIVE", server.conn_json())
            yield server
    finally:
        server.stop()
        print(f"\nHive timings: {TIMINGS}")


@pytest.fixture(scope="module")
def sources(hive, tmp_path_factory):
    """The catalogue in SQLite and in a fresh Hive database (both through their provider hooks)."""
    root = tmp_path_factory.mktemp("hive-src")
    db = root / "source.db"
    schema = f"stockml_it_{uuid.uuid4().hex[:8]}"
    cat = generate_catalogue(SKUS, WEEKS, seed=SEED)
    write_source_tables(get_hook(str(db)), cat.products, cat.movements)
    hook = get_hook("stockml_hive")
    start = time.monotonic()
    write_source_tables(hook, cat.products, cat.movements, schema)
    TIMINGS["load_s"] = round(time.monotonic() - start, 1)
    TIMINGS["load_rows"] = len(cat.products) + len(cat.movements)
    yield {"sqlite": db, "schema": schema, "catalogue": cat}
    HiveStore(hook).execute(f"DROP DATABASE IF EXISTS `{schema}` CASCADE")


@pytest.fixture
def hive_env(monkeypatch, tmp_path, hive, sources):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", conn_json(hive.port))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SQLITE", sqlite_conn_json(sources["sqlite"]))
    monkeypatch.setenv("STOCKML_SOURCE_SCHEMA", sources["schema"])
    monkeypatch.setenv("STOCKML_N_JOBS", "1")
    for var in ("STOCKML_SOURCE_CONN_ID", "STOCKML_PRODUCTS_QUERY", "STOCKML_MOVEMENTS_QUERY", "STOCKML_CUTOFF"):
        monkeypatch.delenv(var, raising=False)
    return sources


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Hive guarantees no row order without ORDER BY: compare as sorted sets of rows."""
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _weekly(hook, schema: str | None) -> tuple[pd.DataFrame, dict]:
    return weekly_demand_through(hook, schema, CUTOFF)


def test_source_hook_is_hiveserver2_and_holds_the_catalogue(hive_env):
    hook = get_hook("stockml_source")
    assert type(hook).__name__ == "HiveServer2Hook"
    cat, schema = hive_env["catalogue"], hive_env["schema"]
    assert hook.get_records(f"SELECT count(*) FROM {schema}.products") == [(len(cat.products),)]
    assert hook.get_records(f"SELECT count(*) FROM {schema}.stock_movements") == [(len(cat.movements),)]


def test_read_source_gives_the_sqlite_frames(hive_env):
    hive_p, hive_m = read_source(get_hook("stockml_source"), SourceQueries.default(hive_env["schema"]))
    lite_p, lite_m = read_source(get_hook("stockml_sqlite"), SourceQueries.default(None))
    assert list(hive_m.columns) == list(lite_m.columns)  # no "stock_movements." prefixes
    assert hive_m["date"].map(type).eq(str).all()  # Hive DATE arrives as 'YYYY-MM-DD', like SQLite's
    pd.testing.assert_frame_equal(_canonical(hive_p), _canonical(lite_p))
    pd.testing.assert_frame_equal(_canonical(hive_m), _canonical(lite_m))


def test_same_weekly_demand_from_sqlite_and_hive(hive_env):
    hive_demand, hive_report = _weekly(get_hook("stockml_source"), hive_env["schema"])
    lite_demand, lite_report = _weekly(get_hook("stockml_sqlite"), None)
    assert hive_demand["unique_id"].nunique() == SKUS
    assert len(hive_demand) > SKUS * 52
    pd.testing.assert_frame_equal(hive_demand, lite_demand)
    assert hive_report == lite_report
    assert hive_report["quarantined"] == 4


def test_ingest_on_hive_quarantines_idempotently(hive_env):
    schema = hive_env["schema"]
    settings = Settings(methods=["Naive", "SES"])
    assert settings.source_conn_id == "stockml_source" and settings.source_schema == schema
    hook = get_hook("stockml_source")

    report = ingest(Run(settings, "hive_run_1"), cutoff=CUTOFF)
    assert report["skus"] == SKUS and report["quarantined"] == 4
    q = read_output(hook, "stock_quarantine", "hive_run_1", schema)
    assert len(q) == 4
    assert set(q["reason"]) == DIRTY_REASONS
    assert set(q["run_id"]) == {"hive_run_1"}
    classes = classify_step(Run(settings, "hive_run_1"))
    assert len(read_output(hook, "stock_classes", "hive_run_1", schema)) == len(classes) == SKUS

    # Re-running the run id overwrites its partition: same rows, never duplicates.
    ingest(Run(settings, "hive_run_1"), cutoff=CUTOFF)
    classify_step(Run(settings, "hive_run_1"))
    assert len(read_output(hook, "stock_quarantine", "hive_run_1", schema)) == 4
    assert len(read_output(hook, "stock_quarantine", None, schema)) == 4
    assert len(read_output(hook, "stock_classes", None, schema)) == SKUS
    # A second run id is a second partition beside the first.
    ingest(Run(settings, "hive_run_2"), cutoff=CUTOFF)
    assert read_output(hook, "stock_quarantine", None, schema)["run_id"].value_counts().to_dict() == {
        "hive_run_1": 4,
        "hive_run_2": 4,
    }
    partitions = hook.get_records(f"SHOW PARTITIONS {schema}.stock_quarantine")
    assert sorted(p[0] for p in partitions) == ["run_id=hive_run_1", "run_id=hive_run_2"]


def test_stock_ingest_dag_on_hive(hive_env, dagbag, airflow_db):
    """The stock_ingest DAG itself, through HiveServer2Hook: same demand as the SQLite path, quarantine in Hive."""
    import pendulum

    dr = dagbag.dags["stock_ingest"].test(logical_date=pendulum.datetime(2026, 11, 21, tz="UTC"))
    assert dr.state == "success"
    run_id = f"stock_ingest__{dr.run_id}"
    hook = get_hook("stockml_source")
    assert len(read_output(hook, "stock_quarantine", run_id, hive_env["schema"])) == 4
    dag_demand = pd.read_parquet(Settings().layout.run(safe_run_id(run_id)).demand)
    lite_demand, _ = _weekly(get_hook("stockml_sqlite"), None)
    dag_demand = dag_demand[dag_demand["ds"] <= lite_demand["ds"].max()]  # the DAG's cut-off is "today"
    pd.testing.assert_frame_equal(canonical_demand(dag_demand), canonical_demand(lite_demand))


def _forecasts(n_skus: int, h: int, bump: float = 0.0) -> pd.DataFrame:
    ds = pd.date_range("2026-11-23", periods=h, freq="W-MON")
    rows = [
        {
            "sku": f"SKU-{i:05d}",
            "ds": d,
            "step": s + 1,
            "method": "SES",
            "yhat": i + s / 3 + bump,
            "lo80": None if s == 0 else 0.1 * i,
            "hi80": 1e-17 * (i + 1),
            "lo95": -0.0,
            "hi95": 12345678.123456789,
            "model_version": "v1",
            "confidence": 0.5,
            "explanation": 'it\'s a \\ back-slash; a\nnew line, ünïcödé, 100% "quoted"',
        }
        for i in range(n_skus)
        for s, d in enumerate(ds)
    ]
    return pd.DataFrame(rows)


def test_hive_store_overwrites_exactly_the_run_partition(hive):
    hook = get_hook("stockml_hive")
    schema = f"stockml_it_{uuid.uuid4().hex[:8]}"
    store = HiveStore(hook, chunk_rows=50)  # > 50 rows goes through a staging table
    try:
        big = _forecasts(12, 10)  # 120 rows: staged
        assert write_output(store, "stock_forecasts", big, "a", schema) == 120
        assert write_output(store, "stock_forecasts", _forecasts(3, 10, bump=1), "b", schema) == 30  # direct
        assert write_output(store, "stock_forecasts", _forecasts(8, 10, bump=2), "a", schema) == 80
        out = read_output(store, "stock_forecasts", None, schema)
        assert out["run_id"].value_counts().to_dict() == {"a": 80, "b": 30}
        a = read_output(hook, "stock_forecasts", "a", schema).sort_values(["sku", "ds"]).reset_index(drop=True)
        want = _forecasts(8, 10, bump=2).assign(ds=lambda d: d["ds"].dt.date)
        cols = list(want.columns)
        pd.testing.assert_frame_equal(a[cols], want, check_dtype=False)  # values round-trip exactly
        assert a["created_at"].notna().all()
        # No staging table is left behind.
        tables = {r[1] for r in hook.get_records(f"SHOW TABLES IN {schema}")}
        assert tables == {"stock_forecasts"}
        # An empty output drops the run's partition.
        assert write_output(store, "stock_forecasts", big.head(0), "b", schema) == 0
        assert set(read_output(store, "stock_forecasts", None, schema)["run_id"]) == {"a"}
    finally:
        store.execute(f"DROP DATABASE IF EXISTS `{schema}` CASCADE")


def test_prune_quarantine_on_hive(hive):
    hook = get_hook("stockml_hive")
    schema = f"stockml_it_{uuid.uuid4().hex[:8]}"
    store = HiveStore(hook)
    rows = pd.DataFrame(
        {"source_table": "stock_movements", "reason": "unknown sku", "sku": ["X", "Y"], "date": "2026-01-05"}
    ).assign(payload="{}")
    try:
        assert prune_quarantine(hook, 90, schema) == 0  # no table yet
        write_output(hook, "stock_quarantine", rows, "fresh", schema)
        # A partition holding rows of two ages (not something write_output produces).
        old, new = literal(pd.Timestamp("2001-01-01"), "TIMESTAMP"), literal(pd.Timestamp.now(), "TIMESTAMP")
        store.execute(
            f"INSERT INTO TABLE `{schema}`.`stock_quarantine` PARTITION (`run_id`='mixed') VALUES "
            f"('m', 'r', 'OLD', NULL, '{{}}', {old}), ('m', 'r', 'NEW', NULL, '{{}}', {new})"
        )
        store.execute(
            f"INSERT INTO TABLE `{schema}`.`stock_quarantine` PARTITION (`run_id`='ancient') VALUES "
            f"('m', 'r', 'OLD', NULL, '{{}}', {old})"
        )
        assert prune_quarantine(hook, 90, schema) == 2
        left = read_output(hook, "stock_quarantine", None, schema)
        assert sorted(zip(left["run_id"], left["sku"], strict=True)) == [
            ("fresh", "X"),
            ("fresh", "Y"),
            ("mixed", "NEW"),
        ]
        partitions = {p[0] for p in hook.get_records(f"SHOW PARTITIONS `{schema}`.`stock_quarantine`")}
        assert partitions == {"run_id=fresh", "run_id=mixed"}
        assert prune_quarantine(hook, -1, schema) == 3  # retention in the future: everything goes
        assert read_output(hook, "stock_quarantine", None, schema).empty
    finally:
        store.execute(f"DROP DATABASE IF EXISTS `{schema}` CASCADE")
