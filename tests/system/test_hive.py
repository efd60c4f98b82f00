"""Hive (HiveServer2) as source and output store, against Spark's Thrift server.

One Spark Thrift server (``tests/support/hive_server.py``: NOSASL on 127.0.0.1, a free port,
warehouse and metastore in a temp folder) serves the module; the tests reach it only
through Airflow's ``HiveServer2Hook`` via the connection ``stockml_hive`` /
``stockml_source``. The same 40-SKU catalogue goes into SQLite and into a Hive database
``stockml_it_<uuid8>``; both must give the same source frames and weekly demand, and
``ingest`` on Hive must quarantine the dirty rows into Hive's ``stock_quarantine``
idempotently: the output key (pipeline, data cut-off week) is the partition, overwritten by
any re-run over the same data (``test_stock_dags_on_hive_leave_one_set_across_reruns`` does
each kind of Airflow re-run).

Skipped, with the reason, when ``java`` is not on PATH.
"""

from __future__ import annotations

import time
import uuid

import pandas as pd
import pytest
from airflow_runs import FAST_TRAINING, asset_triggered_run, clear_and_rerun, one_set
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
from training.data.store import (
    OutputKey,
    latest_output,
    prune_quarantine,
    read_output,
    write_output,
    write_source_tables,
)

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

    # Re-running overwrites the partition of the output key: same rows, never duplicates.
    ingest(Run(settings, "hive_run_1"), cutoff=CUTOFF)
    classify_step(Run(settings, "hive_run_1"))
    assert len(read_output(hook, "stock_quarantine", "hive_run_1", schema)) == 4
    assert len(read_output(hook, "stock_quarantine", None, schema)) == 4
    assert len(read_output(hook, "stock_classes", None, schema)) == SKUS
    # A second run id over the same data overwrites the same partition.
    ingest(Run(settings, "hive_run_2"), cutoff=CUTOFF)
    assert read_output(hook, "stock_quarantine", None, schema)["run_id"].value_counts().to_dict() == {"hive_run_2": 4}
    partitions = hook.get_records(f"SHOW PARTITIONS {schema}.stock_quarantine")
    assert [p[0] for p in partitions] == ["pipeline=cli/cutoff_week=2026-11-16"]
    # The weekly demand and inventory likewise, with the SQL store's types (DATE, BOOLEAN, NULL on hand).
    last = Run(settings, "hive_run_2")
    inventory = pd.read_parquet(last.layout.inventory)
    for table in ("stock_weekly_demand", "stock_weekly_inventory"):
        rows = read_output(hook, table, None, schema)
        assert len(rows) == len(inventory) and set(rows["run_id"]) == {"hive_run_2"}, table
    rows = read_output(hook, "stock_weekly_inventory", None, schema).sort_values(["sku", "ds"], ignore_index=True)
    assert rows["ds"].tolist() == inventory["ds"].dt.date.tolist()
    assert rows["censored"].astype(bool).tolist() == inventory["censored"].tolist() and inventory["censored"].any()
    assert rows["on_hand"].isna().tolist() == inventory["on_hand"].isna().tolist()
    latest = latest_output(hook, "stock_weekly_demand", schema)  # what the service reads: the latest key only
    assert latest is not None and len(latest) == len(inventory) and set(latest["cutoff_week"]) == {"2026-11-16"}


def test_stock_dags_on_hive_leave_one_set_across_reruns(hive_env, dagbag, airflow_db, monkeypatch):
    """The DAGs themselves through HiveServer2Hook: stock_ingest gives the SQLite path's demand, and
    (a) its task cleared, (b) its run cleared, (c) its date triggered again, then (d) two
    Asset-triggered stock_training runs over that ingest each leave one partition of rows."""
    import pendulum

    for k, v in FAST_TRAINING.items():
        monkeypatch.setenv(k, v)
    ingest_dag, training_dag = dagbag.dags["stock_ingest"], dagbag.dags["stock_training"]
    hook, schema = get_hook("stockml_source"), hive_env["schema"]
    dr = ingest_dag.test(logical_date=pendulum.datetime(2026, 11, 21, tz="UTC"))
    assert dr.state == "success"
    run_id = f"stock_ingest__{dr.run_id}"
    one_set(hook, "stock_quarantine", schema, "stock_ingest", 4, run_id)
    dag_demand = pd.read_parquet(Settings().layout.run(safe_run_id(run_id)).demand)
    lite_demand, _ = _weekly(get_hook("stockml_sqlite"), None)
    dag_demand = dag_demand[dag_demand["ds"] <= lite_demand["ds"].max()]  # the DAG's cut-off is "today"
    pd.testing.assert_frame_equal(canonical_demand(dag_demand), canonical_demand(lite_demand))

    assert clear_and_rerun(ingest_dag, dr.run_id, ["ingest"]).state == "success"  # (a)
    one_set(hook, "stock_quarantine", schema, "stock_ingest", 4, run_id)
    assert clear_and_rerun(ingest_dag, dr.run_id).state == "success"  # (b)
    one_set(hook, "stock_quarantine", schema, "stock_ingest", 4, run_id)
    again = ingest_dag.test(logical_date=pendulum.datetime(2026, 11, 21, tz="UTC"))  # (c)
    assert again.state == "success" and again.run_id != dr.run_id
    rows = one_set(hook, "stock_quarantine", schema, "stock_ingest", 4, f"stock_ingest__{again.run_id}")
    week = rows["cutoff_week"].iloc[0]
    partitions = [p[0] for p in hook.get_records(f"SHOW PARTITIONS {schema}.stock_quarantine")]
    assert [p for p in partitions if p.startswith("pipeline=stock_ingest/")] == [
        f"pipeline=stock_ingest/cutoff_week={week}"
    ]

    n_fc = None
    for _ in range(2):  # (d), twice over the same ingest
        tr = asset_triggered_run(training_dag, "stock_ingest", again.run_id)
        assert tr.state == "success", [(ti.task_id, ti.state) for ti in tr.get_task_instances()]
        fc = read_output(hook, "stock_forecasts", f"stock_training__{tr.run_id}", schema)
        n_fc = n_fc or len(fc)
        assert n_fc == len(fc) and fc["sku"].nunique() >= SKUS - 5
        one_set(hook, "stock_forecasts", schema, "stock_training", n_fc, f"stock_training__{tr.run_id}")
        one_set(hook, "stock_classes", schema, "stock_training", SKUS, f"stock_training__{tr.run_id}")
    for table in ("stock_forecasts", "stock_classes"):  # (the CLI test above wrote pipeline=cli partitions)
        partitions = [p[0] for p in hook.get_records(f"SHOW PARTITIONS {schema}.{table}")]
        assert [p for p in partitions if not p.startswith("pipeline=cli/")] == [
            f"pipeline=stock_training/cutoff_week={week}"
        ], partitions


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


KEY_A, KEY_B = OutputKey("stock_training", "2026-11-16"), OutputKey("stock_training", "2026-11-09")


def test_hive_store_overwrites_exactly_the_partition_of_the_key(hive):
    hook = get_hook("stockml_hive")
    schema = f"stockml_it_{uuid.uuid4().hex[:8]}"
    store = HiveStore(hook, chunk_rows=50)  # > 50 rows goes through a staging table
    try:
        big = _forecasts(12, 10)  # 120 rows: staged
        assert write_output(store, "stock_forecasts", big, KEY_A, "a", schema) == 120
        assert write_output(store, "stock_forecasts", _forecasts(3, 10, bump=1), KEY_B, "b", schema) == 30  # direct
        assert write_output(store, "stock_forecasts", _forecasts(8, 10, bump=2), KEY_A, "a2", schema) == 80
        out = read_output(store, "stock_forecasts", None, schema)
        assert out["run_id"].value_counts().to_dict() == {"a2": 80, "b": 30}
        assert out.groupby("cutoff_week").size().to_dict() == {"2026-11-09": 30, "2026-11-16": 80}
        a = read_output(hook, "stock_forecasts", "a2", schema).sort_values(["sku", "ds"]).reset_index(drop=True)
        want = _forecasts(8, 10, bump=2).assign(ds=lambda d: d["ds"].dt.date)
        cols = list(want.columns)
        pd.testing.assert_frame_equal(a[cols], want, check_dtype=False)  # values round-trip exactly
        assert a["created_at"].notna().all()
        # No staging table is left behind.
        tables = {r[1] for r in hook.get_records(f"SHOW TABLES IN {schema}")}
        assert tables == {"stock_forecasts"}
        # An empty output drops the key's partition.
        assert write_output(store, "stock_forecasts", big.head(0), KEY_B, "b2", schema) == 0
        assert set(read_output(store, "stock_forecasts", None, schema)["run_id"]) == {"a2"}

        # A table of the old layout (partitioned by run_id) is renamed aside and recreated.
        store.execute(
            f"CREATE TABLE `{schema}`.`stock_quarantine` (`source_table` STRING, `reason` STRING, `sku` STRING, "
            "`date` STRING, `payload` STRING, `created_at` TIMESTAMP) "
            "PARTITIONED BY (`run_id` STRING) STORED AS PARQUET"
        )
        store.execute(
            f"INSERT INTO TABLE `{schema}`.`stock_quarantine` PARTITION (`run_id`='old') VALUES "
            f"('m', 'r', 'OLD', NULL, '{{}}', {literal(pd.Timestamp('2026-11-01'), 'TIMESTAMP')})"
        )
        rows = pd.DataFrame({"source_table": ["m"], "reason": ["r"], "sku": ["NEW"]})
        assert write_output(store, "stock_quarantine", rows, KEY_A, "new", schema) == 1
        q = read_output(store, "stock_quarantine", None, schema)
        assert list(q["sku"]) == ["NEW"] and list(q["cutoff_week"]) == ["2026-11-16"]
        kept = hook.get_records(f"SELECT `sku`, `run_id` FROM `{schema}`.`stock_quarantine__runid_keyed`")
        assert kept == [("OLD", "old")]
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
        write_output(hook, "stock_quarantine", rows, OutputKey("stock_ingest", "2026-11-16"), "fresh", schema)
        # A partition holding rows of two ages (not something write_output produces).
        old, new = literal(pd.Timestamp("2001-01-01"), "TIMESTAMP"), literal(pd.Timestamp.now(), "TIMESTAMP")
        store.execute(
            f"INSERT INTO TABLE `{schema}`.`stock_quarantine` "
            "PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2026-11-09') VALUES "
            f"('m', 'r', 'OLD', NULL, '{{}}', 'mixed', {old}), ('m', 'r', 'NEW', NULL, '{{}}', 'mixed', {new})"
        )
        store.execute(
            f"INSERT INTO TABLE `{schema}`.`stock_quarantine` "
            "PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2001-01-01') VALUES "
            f"('m', 'r', 'OLD', NULL, '{{}}', 'ancient', {old})"
        )
        assert prune_quarantine(hook, 90, schema) == 2
        left = read_output(hook, "stock_quarantine", None, schema)
        assert sorted(zip(left["run_id"], left["sku"], strict=True)) == [
            ("fresh", "X"),
            ("fresh", "Y"),
            ("mixed", "NEW"),
        ]
        partitions = {p[0] for p in hook.get_records(f"SHOW PARTITIONS `{schema}`.`stock_quarantine`")}
        assert partitions == {
            "pipeline=stock_ingest/cutoff_week=2026-11-16",
            "pipeline=stock_ingest/cutoff_week=2026-11-09",
        }
        assert prune_quarantine(hook, -1, schema) == 3  # retention in the future: everything goes
        assert read_output(hook, "stock_quarantine", None, schema).empty
    finally:
        store.execute(f"DROP DATABASE IF EXISTS `{schema}` CASCADE")


def test_price_promotions_absent_then_read_on_hive(hive_env):
    """The optional table on Hive: a database without it is normal (Spark's TABLE_OR_VIEW_NOT_FOUND is
    told from other errors); written by the store, it reads back and validates like SQLite's."""
    from training.data.source import read_price_promotions
    from training.data.validate import validate_price_promotions

    hook = get_hook("stockml_source")
    assert read_price_promotions(hook, SourceQueries.default(hive_env["schema"])) is None
    schema = f"stockml_pp_{uuid.uuid4().hex[:8]}"
    products = hive_env["catalogue"].products.head(2)
    sku = products["sku"].iloc[0]
    movements = pd.DataFrame(
        {"sku": [sku], "date": [pd.Timestamp("2026-11-02").date()], "qty_sold": [1.0], "qty_received": [0.0],
         "stock_on_hand": [3.0]}
    )  # fmt: skip
    prices = pd.DataFrame(
        {"sku": [sku, sku, "SKU-NOPE"], "date": pd.to_datetime(["2026-11-02", "2027-01-04", "2026-11-02"]).date,
         "unit_price": [10.0, 8.0, 1.0], "on_promotion": [False, True, False]}
    )  # fmt: skip
    try:
        write_source_tables(hook, products, movements, schema, price_promotions=prices)
        read = read_price_promotions(hook, SourceQueries.default(schema))
        good, quarantine, _ = validate_price_promotions(read, set(products["sku"]))
        assert sorted(good["date"].dt.strftime("%Y-%m-%d")) == ["2026-11-02", "2027-01-04"]
        assert good.sort_values("date")["on_promotion"].tolist() == [False, True]
        assert quarantine["reason"].tolist() == ["unknown sku"]
    finally:
        HiveStore(hook).execute(f"DROP DATABASE IF EXISTS `{schema}` CASCADE")
