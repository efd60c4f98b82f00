"""PostgreSQL crashes in the middle of ``stock_ingest``: the task retries, the run succeeds once the
server is back, and the output holds exactly one set of rows (nothing partial, nothing lost).

The source and the outputs live in a throw-away cluster (``tests/support/throwaway_pg.py``: its own
``initdb`` and ``pg_ctl`` on a free port), never the machine's shared server. A first ingest of the
data writes its quarantine rows. Then the same logical date runs again, and at the moment that run
sends its ``INSERT INTO stock_quarantine`` (inside the transaction that has already deleted the
key's old rows) the cluster is stopped in ``immediate`` mode (a crash: connections cut, no
checkpoint) and started again a second later. The test checks that the crashed transaction left the
old rows in place, that the task's first try failed and a later try succeeded (the DAG's retries,
with a short delay here), and that the table ends with one run's rows written by the new run.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pendulum
import pytest
import sqlalchemy as sa
from airflow_runs import FAST_TRAINING, one_set
from throwaway_pg import ThrowawayPostgres

from training.data.demo import generate_catalogue
from training.data.store import read_output, write_source_tables

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DAY = pendulum.datetime(2026, 11, 20, tz="UTC")
QUARANTINED = 4  # the demo's dirty rows: unknown sku, future date, negative qty, duplicate


def test_postgres_crash_mid_ingest_is_retried_and_leaves_one_set(dagbag, airflow_db, tmp_path, monkeypatch):
    with ThrowawayPostgres() as pg:
        engine = sa.create_engine(pg.uri.replace("postgresql://", "postgresql+psycopg://"), pool_pre_ping=True)
        cat = generate_catalogue(30, 110, seed=5)
        write_source_tables(engine, cat.products, cat.movements)
        monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", pg.uri)
        for k, v in FAST_TRAINING.items():
            monkeypatch.setenv(k, v)
        dag = dagbag.dags["stock_ingest"]
        first = dag.test(logical_date=DAY)
        assert first.state == "success"
        one_set(engine, "stock_quarantine", None, "stock_ingest", QUARANTINED, f"stock_ingest__{first.run_id}")

        task = dag.get_task("ingest")
        monkeypatch.setattr(task, "retry_delay", dt.timedelta(seconds=6))
        monkeypatch.setattr(task, "retry_exponential_backoff", False)
        fault: dict = {"fired": 0, "rows_after_crash": None}

        def restart_and_look() -> None:
            time.sleep(1.0)
            pg.start()
            probe = sa.create_engine(pg.uri.replace("postgresql://", "postgresql+psycopg://"))
            rows = read_output(probe, "stock_quarantine")
            fault["rows_after_crash"] = rows[rows["pipeline"] == "stock_ingest"]
            probe.dispose()

        def crash_on_insert(conn, cursor, statement, parameters, context, executemany) -> None:
            if (
                not fault["fired"]
                and statement.lstrip().upper().startswith("INSERT")
                and "stock_quarantine" in statement
            ):
                fault["fired"] += 1
                pg.stop("immediate")  # the DELETE of this transaction already ran; the INSERT now fails
                threading.Thread(target=restart_and_look, daemon=True).start()

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", crash_on_insert)
        try:
            again = dag.test(logical_date=DAY)
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", crash_on_insert)

        assert fault["fired"] == 1, "the fault was never injected"
        old = fault["rows_after_crash"]
        assert old is not None and len(old) == QUARANTINED, "the crashed transaction lost the previous rows"
        assert set(old["run_id"]) == {f"stock_ingest__{first.run_id}"}
        assert again.state == "success", [(ti.task_id, ti.state) for ti in again.get_task_instances()]
        ti = again.get_task_instance("ingest")
        assert ti.try_number >= 2, f"the task did not retry (try {ti.try_number})"
        one_set(engine, "stock_quarantine", None, "stock_ingest", QUARANTINED, f"stock_ingest__{again.run_id}")
        engine.dispose()
