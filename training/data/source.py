"""Read the source contract (products, stock_movements) through any DB-API hook.

Optional tables (``price_promotions``) are read the same way; a source without them is normal:
:func:`read_optional` tells a missing table from a broken query and returns None for the former.

The hook is an Airflow provider hook (SqliteHook, PostgresHook, HiveServer2Hook) or anything
with the same ``get_df(sql)`` method, so this module stays free of Airflow imports and the
same code reads every backend. The queries are configurable: a company points them at the
views it already has (for example ``vw_saldo_estoque``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

PRODUCT_COLUMNS = ["sku", "name", "category", "unit_cost", "unit_price", "lead_time_weeks", "min_order_qty"]
MOVEMENT_COLUMNS = ["sku", "date", "qty_sold", "qty_received", "stock_on_hand"]
PRICE_PROMOTION_COLUMNS = ["sku", "date", "unit_price", "on_promotion"]
# How each backend says a table does not exist: SQLite, PostgreSQL (UndefinedTable, SQLSTATE 42P01),
# Hive ("Table not found"), Spark's Thrift server (TABLE_OR_VIEW_NOT_FOUND, "Table or view not found").
MISSING_TABLE_MARKERS = (
    "no such table",
    "undefinedtable",
    "42p01",
    "table not found",
    "table_or_view_not_found",
    "table or view not found",
)


class DataFrameHook(Protocol):
    def get_df(self, sql: str, parameters: Any = None, **kwargs: Any) -> pd.DataFrame: ...


class SourceContractError(ValueError):
    """The source does not have the columns the contract needs."""


def qualify(table: str, schema: str | None) -> str:
    return f"{schema}.{table}" if schema else table


@dataclass(frozen=True)
class SourceQueries:
    products: str
    movements: str
    price_promotions: str | None = None  # optional table: None leaves it unread

    @classmethod
    def default(
        cls,
        schema: str | None = None,
        products: str | None = None,
        movements: str | None = None,
        price_promotions: str | None = None,
    ) -> SourceQueries:
        return cls(
            products=products or f"SELECT {', '.join(PRODUCT_COLUMNS)} FROM {qualify('products', schema)}",
            movements=movements or f"SELECT {', '.join(MOVEMENT_COLUMNS)} FROM {qualify('stock_movements', schema)}",
            price_promotions=price_promotions
            or f"SELECT {', '.join(PRICE_PROMOTION_COLUMNS)} FROM {qualify('price_promotions', schema)}",
        )


def _get_df(hook: DataFrameHook, sql: str) -> pd.DataFrame:
    df = hook.get_df(sql)
    # Hive prefixes columns with the table name ("products.sku"); keep the bare name.
    df.columns = [str(c).split(".")[-1].lower() for c in df.columns]
    return df


def _require(df: pd.DataFrame, columns: list[str], what: str, sql: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceContractError(
            f"The {what} query returned no column(s) {missing}; it must return {columns}. "
            f"Query was: {sql!r}. Set STOCKML_{what.upper()}_QUERY to a query that does."
        )
    return df[columns].copy()


def read_source(hook: DataFrameHook, queries: SourceQueries) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (products, movements) exactly as the source holds them (validation comes next)."""
    products = _require(_get_df(hook, queries.products), PRODUCT_COLUMNS, "products", queries.products)
    movements = _require(_get_df(hook, queries.movements), MOVEMENT_COLUMNS, "movements", queries.movements)
    return products, movements


def is_missing_table_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the queried table does not exist, on any backend."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__} {getattr(exc, 'pgcode', '') or ''} {exc}".lower()
        if any(marker in text for marker in MISSING_TABLE_MARKERS):
            return True
        if "relation" in text and "does not exist" in text:  # PostgreSQL without a SQLSTATE attached
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def read_optional(hook: DataFrameHook, sql: str | None, columns: list[str], what: str) -> pd.DataFrame | None:
    """An optional table's rows, or None when the source does not have it (absent is normal).

    Only a missing table counts as absent; any other failure (a typo in a configured query, a
    lost connection) is raised, and a table without the contract's columns too.
    """
    if not sql:
        return None
    try:
        df = _get_df(hook, sql)
    except Exception as exc:
        if is_missing_table_error(exc):
            return None
        raise
    return _require(df, columns, what, sql)


def read_price_promotions(hook: DataFrameHook, queries: SourceQueries) -> pd.DataFrame | None:
    """The optional ``price_promotions(sku, date, unit_price, on_promotion)`` rows, or None if absent."""
    return read_optional(hook, queries.price_promotions, PRICE_PROMOTION_COLUMNS, "price_promotions")
