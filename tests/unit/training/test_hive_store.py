"""The Hive output store's SQL, without a server: literals, partition overwrite, staging, dispatch.

``tests/system/test_hive.py`` runs the same code against Spark's Thrift server; these tests keep the
statement shapes checked on machines without Java.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from training.data.hive_store import HiveStore, HiveStoreError, frame_types, literal
from training.data.store import OUTPUT_TABLES, OutputKey, SqlAlchemyStore, open_store, read_output, write_output

QUARANTINE_COLUMNS = [
    *["source_table", "reason", "sku", "date", "payload", "run_id", "created_at"],
    *["pipeline", "cutoff_week"],  # the partition columns come last
]
# The layout before outputs were keyed by the data: partitioned by run_id.
LEGACY_QUARANTINE_COLUMNS = ["source_table", "reason", "sku", "date", "payload", "created_at", "run_id"]
KEY = OutputKey("stock_ingest", "2026-11-16")


class FakeHiveHook:
    """Records statements; answers SHOW TABLES / SHOW COLUMNS from ``existing`` (table → columns).

    A fake, because these tests check the statements' shapes on machines without Java; the same
    code runs against Spark's Thrift server in tests/system/test_hive.py.
    """

    conn_type = "hiveserver2"

    def __init__(self, fail_on: str | None = None, existing: dict[str, list[str]] | None = None) -> None:
        self.statements: list[str] = []
        self.fail_on = fail_on
        self.log_sql = True
        self.existing = dict(existing or {})

    def run(self, sql, *args, **kwargs):
        assert self.log_sql is False, "bulk statements must not be logged in full"
        for s in [sql] if isinstance(sql, str) else sql:
            if self.fail_on and self.fail_on in s:
                raise RuntimeError("TExecuteStatementResp(status=TStatus(errorMessage='boom: table is locked'))")
            self.statements.append(s)
            if s.startswith("ALTER TABLE") and " RENAME TO " in s:
                self.existing.pop("stock_quarantine", None)
            if s.startswith("CREATE TABLE IF NOT EXISTS"):
                self.existing.setdefault("stock_quarantine", QUARANTINE_COLUMNS)

    def get_df(self, sql, *args, **kwargs):
        self.statements.append(sql)
        if sql.startswith("SHOW DATABASES"):
            return pd.DataFrame({"namespace": ["db"]})
        if sql.startswith("SHOW TABLES"):
            return pd.DataFrame({"tablename": [t for t in self.existing if f"'{t}'" in sql]})
        if sql.startswith("SHOW COLUMNS"):
            return pd.DataFrame({"col_name": self.existing.get("stock_quarantine", [])})
        raise AssertionError(f"unexpected query {sql}")


def _quarantine(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"source_table": "stock_movements", "reason": "unknown sku", "sku": [f"S{i}" for i in range(n)]}
    ).assign(date=None, payload='{"q": "it\'s"}')


def test_literals():
    assert literal(1.5, "DOUBLE") == "1.5E0"  # 1.5 alone is a DECIMAL in Spark
    assert literal(1e-17, "DOUBLE") == "1e-17"
    assert literal(np.float64("nan"), "DOUBLE") == "NULL"
    assert literal(float("inf"), "DOUBLE") == "NULL"
    assert literal(None, "STRING") == "NULL"
    assert literal(3.0, "BIGINT") == "3"
    assert literal(np.int64(7), "BIGINT") == "7"
    with pytest.raises(ValueError):
        literal(3.5, "BIGINT")
    assert literal(np.bool_(True), "BOOLEAN") == "TRUE"
    assert literal("2026-11-22", "DATE") == "DATE '2026-11-22'"
    assert literal(pd.Timestamp("2026-11-22"), "DATE") == "DATE '2026-11-22'"
    assert literal(dt.datetime(2026, 1, 2, 3, 4, 5, 6), "TIMESTAMP") == "TIMESTAMP '2026-01-02 03:04:05.000006'"
    assert literal("it's a \\ and\na line", "STRING") == "'it\\'s a \\\\ and\\na line'"


def test_frame_types():
    df = pd.DataFrame(
        {"s": ["a"], "d": [dt.date(2026, 1, 1)], "i": [1], "f": [1.0], "b": [True], "t": [pd.Timestamp(0)]}
    )
    assert frame_types(df) == {
        "s": "STRING",
        "d": "DATE",
        "i": "BIGINT",
        "f": "DOUBLE",
        "b": "BOOLEAN",
        "t": "TIMESTAMP",
    }


def test_write_overwrites_the_partition_of_the_output_key():
    hook = FakeHiveHook()
    key = OutputKey("stock'ingest", "2026-11-16")
    assert write_output(hook, "stock_quarantine", _quarantine(2), key, "run'1", "db") == 2
    assert hook.log_sql is True  # restored
    create_db, show_db, show_tables, create_table, show, insert = hook.statements
    assert create_db == "CREATE DATABASE IF NOT EXISTS `db`"
    assert show_db.startswith("SHOW DATABASES") and show_tables == "SHOW TABLES IN `db` LIKE 'stock_quarantine'"
    assert create_table.startswith("CREATE TABLE IF NOT EXISTS `db`.`stock_quarantine` (`source_table` STRING")
    assert create_table.endswith("PARTITIONED BY (`pipeline` STRING, `cutoff_week` STRING) STORED AS PARQUET")
    assert "`run_id` STRING," in create_table  # the run id is a data column, not the partition
    data_columns = create_table.split(" PARTITIONED BY ")[0]
    assert "`pipeline`" not in data_columns and "`cutoff_week`" not in data_columns
    assert show == "SHOW COLUMNS IN `stock_quarantine` IN `db`"
    assert insert.startswith(
        "INSERT OVERWRITE TABLE `db`.`stock_quarantine` "
        "PARTITION (`pipeline`='stock\\'ingest', `cutoff_week`='2026-11-16') VALUES "
    )
    assert insert.count("('stock_movements', 'unknown sku', 'S") == 2
    assert ", NULL, '{\"q\": \"it\\'s\"}', 'run\\'1', TIMESTAMP '" in insert


def test_a_table_partitioned_by_run_id_is_renamed_and_recreated():
    hook = FakeHiveHook(existing={"stock_quarantine": LEGACY_QUARANTINE_COLUMNS})
    assert write_output(hook, "stock_quarantine", _quarantine(1), KEY, "r1") == 1
    renames = [s for s in hook.statements if " RENAME TO " in s]
    assert renames == ["ALTER TABLE `stock_quarantine` RENAME TO `stock_quarantine__runid_keyed`"]
    created = hook.statements.index(next(s for s in hook.statements if s.startswith("CREATE TABLE IF NOT")))
    assert hook.statements.index(renames[0]) < created
    assert "PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2026-11-16')" in hook.statements[-1]
    hook.statements.clear()
    write_output(hook, "stock_quarantine", _quarantine(1), KEY, "r2")  # the new layout is left alone
    assert not [s for s in hook.statements if " RENAME TO " in s]


def test_large_write_is_staged_then_moved_in_one_overwrite():
    hook = FakeHiveHook()
    HiveStore(hook, chunk_rows=2).write("stock_quarantine", _quarantine(5), KEY, "r1")
    writes = hook.statements[3:]  # after SHOW TABLES, CREATE TABLE IF NOT EXISTS and SHOW COLUMNS
    assert writes[0].startswith("CREATE TABLE `stock_quarantine__stockml_stage_")
    inserts = [s for s in writes if s.startswith("INSERT INTO TABLE `stock_quarantine__stockml_stage_")]
    assert [s.count("'stock_movements'") for s in inserts] == [2, 2, 1]
    assert writes[-2].startswith(
        "INSERT OVERWRITE TABLE `stock_quarantine` PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2026-11-16') "
        "SELECT "
    )
    assert writes[-1].startswith("DROP TABLE IF EXISTS `stock_quarantine__stockml_stage_")


def test_empty_output_drops_the_partition():
    hook = FakeHiveHook()
    assert write_output(hook, "stock_quarantine", _quarantine(0), KEY, "r1") == 0
    assert hook.statements[-1] == (
        "ALTER TABLE `stock_quarantine` DROP IF EXISTS "
        "PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2026-11-16')"
    )


def test_failed_stage_is_dropped_and_the_server_message_kept():
    hook = FakeHiveHook(fail_on="INSERT INTO TABLE")
    with pytest.raises(HiveStoreError, match="boom: table is locked"):
        HiveStore(hook, chunk_rows=1).write("stock_quarantine", _quarantine(3), KEY, "r1")
    assert hook.statements[-1].startswith("DROP TABLE IF EXISTS `stock_quarantine__stockml_stage_")
    assert not any(s.startswith("INSERT OVERWRITE") for s in hook.statements)


def test_dispatch(tmp_path):
    class SqlHook:  # what SqliteHook / PostgresHook offer
        def __init__(self):
            self.engines = []

        def get_sqlalchemy_engine(self):
            self.engines.append(sa.create_engine(f"sqlite:///{tmp_path / 'out.db'}"))
            return self.engines[-1]

    hook = SqlHook()
    assert write_output(hook, "stock_quarantine", _quarantine(3), KEY, "r1") == 3
    assert write_output(hook, "stock_quarantine", _quarantine(3), KEY, "r2") == 3  # same key, another run
    assert read_output(hook, "stock_quarantine", "r1").empty  # replaced
    assert len(read_output(hook, "stock_quarantine", "r2")) == 3
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'out.db'}")
    with open_store(engine) as store:
        assert isinstance(store, SqlAlchemyStore)
        assert len(store.read("stock_quarantine")) == 3
    with open_store(FakeHiveHook()) as store:
        assert isinstance(store, HiveStore)
    hive_engine = sa.create_engine("hive://localhost:10000/default")  # pyhive's dialect; never connects here
    with pytest.raises(TypeError, match="pass the hook"), open_store(hive_engine):
        pass
    with pytest.raises(ValueError, match="unknown output table"):
        write_output(FakeHiveHook(), "nope", _quarantine(1), KEY, "r1")
    assert "stock_quarantine" in OUTPUT_TABLES
