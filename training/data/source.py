"""Read the source contract (products, stock_movements) through any DB-API hook.

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

    @classmethod
    def default(
        cls, schema: str | None = None, products: str | None = None, movements: str | None = None
    ) -> SourceQueries:
        return cls(
            products=products or f"SELECT {', '.join(PRODUCT_COLUMNS)} FROM {qualify('products', schema)}",
            movements=movements or f"SELECT {', '.join(MOVEMENT_COLUMNS)} FROM {qualify('stock_movements', schema)}",
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
