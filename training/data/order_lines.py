"""The optional source table ``order_lines(order_id, date, customer_id, sku, qty)``: read, validate, write.

Customer order lines feed the market-basket analysis (:mod:`training.classification.related`).
Many sources have no such table, and that is normal: :func:`read_order_lines` returns ``None``
when the table is absent (detected on SQLite, PostgreSQL and Hive without a failed query), and
the related-products step is skipped. A configured query (``STOCKML_ORDER_LINES_QUERY``) says
the source has order lines: its errors are reported, never taken for absence.

Validation quarantines, with a reason, and never drops silently: a missing ``order_id``, an
unknown SKU, an unparseable or future date, a non-numeric or non-positive ``qty``. A SKU
appearing on several lines of one order is kept (the basket only asks whether it is there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from training.data.source import DataFrameHook, _get_df, _require, qualify
from training.data.sql_store import replace_table
from training.data.validate import QUARANTINE_COLUMNS, _apply_rules, _numeric

log = logging.getLogger(__name__)

ORDER_LINE_COLUMNS = ["order_id", "date", "customer_id", "sku", "qty"]
TABLE = "order_lines"


def order_lines_query(schema: str | None = None, query: str | None = None) -> str:
    """The configured query, or the contract's columns from table ``order_lines``."""
    return query or f"SELECT {', '.join(ORDER_LINE_COLUMNS)} FROM {qualify(TABLE, schema)}"


def _string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def table_exists(hook: Any, table: str, schema: str | None = None) -> bool | None:
    """Whether ``table`` (or a view of that name) exists; ``None`` when the backend is unknown.

    Asks the catalogue of the backend the hook talks to, so a source without the table costs
    no failed query (a failed statement would abort a PostgreSQL transaction).
    """
    kind = getattr(hook, "conn_type", None)
    if kind == "hiveserver2":
        from training.data.hive_store import HiveStore

        return HiveStore(hook).table_exists(table, schema)
    if kind == "sqlite":
        prefix = f'"{schema}".' if schema else ""
        name = _string_literal(table)
        sql = f"SELECT name FROM {prefix}sqlite_master WHERE type IN ('table', 'view') AND name = {name}"
        return not hook.get_df(sql).empty
    if kind == "postgres":
        where = f"table_schema = {_string_literal(schema)}" if schema else "table_schema = current_schema()"
        sql = (
            f"SELECT table_name FROM information_schema.tables WHERE {where} AND table_name = {_string_literal(table)}"
        )
        return not hook.get_df(sql).empty
    return None


_ABSENT_HINTS = ("no such table", "does not exist", "not found", "table or view")


def read_order_lines(hook: DataFrameHook, schema: str | None = None, query: str | None = None) -> pd.DataFrame | None:
    """The order lines as the source holds them, or ``None`` when the source has no ``order_lines`` table."""
    sql = order_lines_query(schema, query)
    if query is None:
        exists = table_exists(hook, TABLE, schema)
        if exists is False:
            return None
        if exists is None:  # a backend we cannot ask: the query itself tells
            try:
                return _require(_get_df(hook, sql), ORDER_LINE_COLUMNS, TABLE, sql)
            except Exception as exc:
                if any(h in str(exc).lower() for h in _ABSENT_HINTS):
                    log.info("the source has no %s table (%s)", TABLE, exc)
                    return None
                raise
    return _require(_get_df(hook, sql), ORDER_LINE_COLUMNS, TABLE, sql)


@dataclass
class OrderLinesResult:
    lines: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict = field(default_factory=dict)


def validate_order_lines(lines: pd.DataFrame, known_skus: set[str], today: pd.Timestamp) -> OrderLinesResult:
    """Split order lines into valid and quarantined rows (each under the first rule it breaks)."""
    df = lines.copy()
    df["sku"] = df["sku"].astype("string").str.strip()
    order_id = df["order_id"].astype("string").str.strip()
    dates = pd.to_datetime(df["date"], errors="coerce")
    qty = _numeric(df["qty"])
    q: list[pd.DataFrame] = []
    rules: list[tuple[str, pd.Series]] = [
        ("missing order_id", order_id.isna() | (order_id == "")),
        ("unknown sku", ~df["sku"].isin(known_skus)),
        ("date is not a date", dates.isna()),
        ("future date", dates > today),
        ("qty is not a number", qty.isna()),
        ("non-positive qty", qty <= 0),
    ]
    bad = _apply_rules(lines, rules, TABLE, q)
    quarantine = pd.concat(q, ignore_index=True) if q else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    good = pd.DataFrame(
        {
            "order_id": order_id.astype(str),
            "date": dates.dt.normalize(),
            "customer_id": df["customer_id"].astype("string").str.strip().astype(object),
            "sku": df["sku"].astype(str),
            "qty": qty,
        }
    ).loc[~bad.values]
    good = good.reset_index(drop=True)
    report = {
        "order_lines_read": len(lines),
        "order_lines_valid": len(good),
        "order_lines_quarantined": len(quarantine),
        "orders": int(good["order_id"].nunique()),
    }
    return OrderLinesResult(good, quarantine, report)


def write_order_lines(target: Any, lines: pd.DataFrame, schema: str | None = None) -> None:
    """Replace the source table ``order_lines`` (``stockml demo-data``): an engine, a SQL hook or a Hive hook."""
    from training.data.store import is_hive_hook

    lines = lines.assign(date=pd.to_datetime(lines["date"]).dt.date)[ORDER_LINE_COLUMNS]
    if is_hive_hook(target):
        _write_hive(target, lines, schema)
        return
    engine = target.get_sqlalchemy_engine() if hasattr(target, "get_sqlalchemy_engine") else target
    try:
        with engine.begin() as conn:
            replace_table(conn, TABLE, lines, schema)
    finally:
        if engine is not target:
            engine.dispose()


def _write_hive(hook: Any, lines: pd.DataFrame, schema: str | None) -> None:
    """Load into a new Parquet table, then swap it in (DROP + RENAME), as the Hive store does for the others."""
    from training.data.hive_store import HiveStore, frame_types, qualified, quote_ident

    store = HiveStore(hook)
    if schema:
        store.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(schema)}")
    columns = list(frame_types(lines).items())
    load = qualified(f"{TABLE}__stockml_load", schema)
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
    store.execute(
        [
            f"DROP TABLE IF EXISTS {load}",
            f"CREATE TABLE {load} ({cols}) STORED AS PARQUET",
            *store._insert_chunks(load, columns, lines),
        ]
    )
    table = qualified(TABLE, schema)
    store.execute([f"DROP TABLE IF EXISTS {table}", f"ALTER TABLE {load} RENAME TO {table}"])
