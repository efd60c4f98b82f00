"""The SQL store's output key and the migration of tables keyed by run id, on SQLite and on PostgreSQL.

Before outputs were keyed by the data they came from, ``stock_classes`` and ``stock_forecasts``
had ``run_id`` in their primary key and ``stock_quarantine`` an index on it. A database holding
such tables must not break a new run: the first write (or read) copies the old rows to
``<table>__runid_keyed`` and recreates the table with the new key. Postgres runs in a
throw-away schema of the test server (``services.throwaway_pg_schema``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

from training.data.store import OutputKey, read_output, write_output

KEY = OutputKey("stock_training", "2026-11-16")
OTHER_WEEK = OutputKey("stock_training", "2026-11-09")


def legacy_tables(schema: str | None) -> dict[str, sa.Table]:
    """The tables as the previous release created them (run_id in the key)."""
    md = sa.MetaData(schema=schema)
    created = sa.Column("created_at", sa.DateTime, nullable=False)
    return {
        "stock_forecasts": sa.Table(
            "stock_forecasts",
            md,
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("sku", sa.String(64), primary_key=True),
            sa.Column("ds", sa.Date, primary_key=True),
            sa.Column("step", sa.Integer),
            sa.Column("method", sa.String(64)),
            sa.Column("yhat", sa.Float),
            created,
        ),
        "stock_quarantine": sa.Table(
            "stock_quarantine",
            md,
            sa.Column("run_id", sa.String(128), nullable=False, index=True),
            sa.Column("source_table", sa.String(64)),
            sa.Column("reason", sa.String(128)),
            sa.Column("sku", sa.String(64)),
            sa.Column("date", sa.String(32)),
            sa.Column("payload", sa.Text),
            created.copy(),
        ),
    }


def _forecasts(skus: int, weeks: int = 4) -> pd.DataFrame:
    rows = [
        {
            "sku": f"S{i}",
            "ds": dt.date(2026, 11, 23) + dt.timedelta(weeks=w),
            "step": w + 1,
            "method": "SES",
            "yhat": 1.0,
        }
        for i in range(skus)
        for w in range(weeks)
    ]
    return pd.DataFrame(rows)


def _quarantine(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"source_table": "stock_movements", "reason": "unknown sku", "sku": [f"X{i}" for i in range(n)]}
    )


def _create_legacy(engine: sa.Engine, schema: str | None, runs: tuple[str, ...] = ("old1", "old2")) -> None:
    """Old-layout tables holding the same SKUs for several runs (what run-id keying accumulated)."""
    now = dt.datetime(2026, 11, 1)
    with engine.begin() as conn:
        for t in legacy_tables(schema).values():
            t.create(conn)
        fc = legacy_tables(schema)["stock_forecasts"]
        q = legacy_tables(schema)["stock_quarantine"]
        for run in runs:
            rows = _forecasts(3).assign(run_id=run, created_at=now).to_dict("records")
            conn.execute(fc.insert(), rows)
            conn.execute(q.insert(), _quarantine(2).assign(run_id=run, created_at=now).to_dict("records"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path) -> Iterator[tuple[sa.Engine, str | None]]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'out.db'}")
        yield engine, None
        engine.dispose()
    else:
        from services import throwaway_pg_schema

        with throwaway_pg_schema("stockml_keys") as (engine, schema):
            yield engine, schema


def _count(engine: sa.Engine, table: str, schema: str | None) -> int:
    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()


def test_a_key_is_replaced_whatever_run_wrote_it_and_other_keys_stay(db):
    engine, schema = db
    assert write_output(engine, "stock_forecasts", _forecasts(5), KEY, "run-a", schema) == 20
    assert write_output(engine, "stock_forecasts", _forecasts(5), KEY, "run-b", schema) == 20  # same data, new run
    rows = read_output(engine, "stock_forecasts", None, schema)
    assert len(rows) == 20 and set(rows["run_id"]) == {"run-b"}
    assert not rows.duplicated(["pipeline", "cutoff_week", "sku", "ds"]).any()
    assert write_output(engine, "stock_forecasts", _forecasts(2), OTHER_WEEK, "run-c", schema) == 8
    rows = read_output(engine, "stock_forecasts", None, schema)
    assert rows.groupby("cutoff_week").size().to_dict() == {"2026-11-09": 8, "2026-11-16": 20}
    assert write_output(engine, "stock_forecasts", _forecasts(0), KEY, "run-d", schema) == 0  # empties the key
    assert set(read_output(engine, "stock_forecasts", None, schema)["cutoff_week"]) == {"2026-11-09"}
    pk = sa.inspect(engine).get_pk_constraint("stock_forecasts", schema=schema)["constrained_columns"]
    assert pk == ["pipeline", "cutoff_week", "sku", "ds"]


def test_tables_keyed_by_run_id_are_recreated_and_their_rows_kept_aside(db):
    engine, schema = db
    _create_legacy(engine, schema)
    # The old forecasts hold S0..S2 twice (runs old1 and old2): inserting by the new key into that
    # table would break its primary key or add a third copy. The write recreates it instead.
    assert write_output(engine, "stock_forecasts", _forecasts(3), KEY, "new1", schema) == 12
    assert write_output(engine, "stock_forecasts", _forecasts(3), KEY, "new2", schema) == 12
    rows = read_output(engine, "stock_forecasts", None, schema)
    assert len(rows) == 12 and set(rows["run_id"]) == {"new2"} and set(rows["pipeline"]) == {"stock_training"}
    assert _count(engine, "stock_forecasts__runid_keyed", schema) == 24  # both old runs, untouched
    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("stock_forecasts", schema=schema)["constrained_columns"] == [
        *("pipeline", "cutoff_week", "sku", "ds")
    ]

    # A read of an old table migrates it too (nothing of the new key is in it yet).
    assert read_output(engine, "stock_quarantine", None, schema).empty
    assert _count(engine, "stock_quarantine__runid_keyed", schema) == 4
    assert write_output(engine, "stock_quarantine", _quarantine(3), KEY, "new1", schema) == 3
    assert len(read_output(engine, "stock_quarantine", None, schema)) == 3
    names = {ix["name"] for ix in sa.inspect(engine).get_indexes("stock_quarantine", schema=schema)}
    assert "ix_stock_quarantine_key" in names and "ix_stock_quarantine_run_id" not in names


def test_a_second_old_table_is_kept_under_a_new_name(db):
    """An old release writing again after the migration recreates an old table: nothing is overwritten."""
    engine, schema = db
    _create_legacy(engine, schema, runs=("old1",))
    write_output(engine, "stock_quarantine", _quarantine(1), KEY, "new1", schema)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {f'{schema}.' if schema else ''}stock_quarantine"))
    legacy_tables(schema)["stock_quarantine"].create(engine)
    with engine.begin() as conn:
        q = legacy_tables(schema)["stock_quarantine"]
        conn.execute(
            q.insert(), _quarantine(5).assign(run_id="old2", created_at=dt.datetime(2026, 11, 2)).to_dict("records")
        )
    assert write_output(engine, "stock_quarantine", _quarantine(1), KEY, "new2", schema) == 1
    assert _count(engine, "stock_quarantine__runid_keyed", schema) == 2
    assert _count(engine, "stock_quarantine__runid_keyed_2", schema) == 5


def test_sqlite_fast_insert_stores_what_sqlalchemy_would(tmp_path):
    # The SQLite path hands tuples to the driver itself, each column's bind processor applied once per
    # distinct value; the stored text and numbers must be those of SQLAlchemy's own executemany.
    from training.data.output_schema import output_frame, output_tables
    from training.data.sql_store import _clean

    frame = pd.DataFrame(
        {
            "sku": ["a", "a", "b", "c"],
            "ds": pd.to_datetime(["2026-11-02", "2026-11-09", "2026-11-02", "2026-11-02"]),
            "step": [1, 2, 1, 1],
            "method": ["TSB", None, "AutoETS", "TSB"],
            "yhat": [1.5, float("nan"), 0.0, 2.25],
            "lo80": [0.5, 0.1, None, 1.0],
            "confidence": [0.7, 0.7, 0.2, float("nan")],
        }
    )
    fast = sa.create_engine(f"sqlite:///{tmp_path / 'fast.db'}")
    write_output(fast, "stock_forecasts", frame, KEY, "r1")
    stored = output_frame("stock_forecasts", frame, KEY, "r1", created_at=dt.datetime(2026, 11, 20, 8, 30, 1, 250))
    t = output_tables(None)["stock_forecasts"]
    slow = sa.create_engine(f"sqlite:///{tmp_path / 'slow.db'}")
    with slow.begin() as conn:
        t.create(conn)
        names = [c.name for c in t.columns if c.name in stored.columns]
        records = [
            {c: _clean(v) for c, v in zip(names, row, strict=True)} for row in stored[names].itertuples(index=False)
        ]
        conn.execute(t.insert(), records)

    def raw(engine: sa.Engine) -> list[tuple]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM stock_forecasts ORDER BY sku, ds").fetchall()
        return [tuple(v for k, v in zip(t.columns.keys(), r, strict=True) if k != "created_at") for r in rows]

    assert raw(fast) == raw(slow)
    assert len(raw(fast)) == 4 and raw(fast)[1][t.columns.keys().index("yhat")] is None
    with fast.connect() as conn:
        created = conn.exec_driver_sql("SELECT DISTINCT created_at FROM stock_forecasts").scalar_one()
    assert isinstance(created, str) and dt.datetime.fromisoformat(created)
