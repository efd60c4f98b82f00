"""Pipeline outputs and source tables in Hive, through a HiveServer2 hook (Hive, Spark's Thrift server).

Hive has no transactions and no DELETE on ordinary tables, so idempotency comes from the
layout: every output table is ``PARTITIONED BY (pipeline STRING, cutoff_week STRING)``, the
output key (:class:`~training.data.output_schema.OutputKey`), and a write is one
``INSERT OVERWRITE TABLE t PARTITION (pipeline='...', cutoff_week='...')``, which replaces
exactly that key's rows whatever run wrote them before (an empty output drops the partition);
``run_id`` is a data column. Writes larger than ``chunk_rows`` are first staged (``INSERT
INTO`` a staging table in chunks) and then moved with that one overwrite, so a failure
half-way leaves the previous rows of the key in place.

A table of the old layout (partitioned by ``run_id``) is renamed to ``<table>__runid_keyed``
on the first write or read and the table is created anew.

Rows travel as SQL literals (``INSERT ... VALUES``) through the hook, so the server may be
anywhere the hook reaches: nothing assumes a shared filesystem. Measured on 2 cores
against Spark 4.3's Thrift server: ~12k movement rows in ~2 s warm (4-7 s right after the server
starts), ~105k in ~7-12 s. (A Parquet file + CREATE TABLE ... LOCATION takes 0.3 s, but only
where the server shares the client's filesystem.)

The hook needs ``run(list_of_sql)`` and ``get_df(sql)`` (Airflow's ``HiveServer2Hook``);
this module does not import Airflow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from training.data.output_schema import (
    KEY_COLUMNS,
    LEGACY_SUFFIX,
    OutputKey,
    check_output_table,
    output_frame,
    output_tables,
)

log = logging.getLogger(__name__)

PARTITION_COLUMNS = KEY_COLUMNS
CHUNK_ROWS = 10_000


class HiveHook(Protocol):
    def run(self, sql: Any, *args: Any, **kwargs: Any) -> Any: ...

    def get_df(self, sql: str, *args: Any, **kwargs: Any) -> pd.DataFrame: ...


class HiveStoreError(RuntimeError):
    """A HiveServer2 statement failed; the message carries the server's error, not the Thrift dump."""


def hive_type(column_type: sa.types.TypeEngine) -> str:
    """The Hive type of a SQLAlchemy column type used by the output tables."""
    if isinstance(column_type, sa.Boolean):
        return "BOOLEAN"
    if isinstance(column_type, sa.Integer):
        return "BIGINT"
    if isinstance(column_type, sa.Float):
        return "DOUBLE"
    if isinstance(column_type, sa.DateTime):
        return "TIMESTAMP"
    if isinstance(column_type, sa.Date):
        return "DATE"
    if isinstance(column_type, sa.String):  # Text is a String
        return "STRING"
    raise TypeError(f"no Hive type for {column_type!r}")


def frame_types(df: pd.DataFrame) -> dict[str, str]:
    """Hive column types for a source frame (date objects → DATE, text → STRING)."""
    types: dict[str, str] = {}
    for name, s in df.items():
        if pd.api.types.is_bool_dtype(s):
            types[str(name)] = "BOOLEAN"
        elif pd.api.types.is_integer_dtype(s):
            types[str(name)] = "BIGINT"
        elif pd.api.types.is_float_dtype(s):
            types[str(name)] = "DOUBLE"
        elif pd.api.types.is_datetime64_any_dtype(s):
            types[str(name)] = "TIMESTAMP"
        else:
            values = s.dropna()
            is_date = len(values) > 0 and all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in values)
            types[str(name)] = "DATE" if is_date else "STRING"
    return types


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def qualified(table: str, schema: str | None) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}" if schema else quote_ident(table)


def string_literal(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def _missing(value: object) -> bool:
    if value is None or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def literal(value: object, type_: str) -> str:
    """``value`` as a Hive SQL literal of ``type_`` (NaN/None → NULL; doubles always in E notation)."""
    if _missing(value):
        return "NULL"
    if type_ == "STRING":
        return string_literal(str(value))
    if type_ == "DOUBLE":
        f = float(value)  # type: ignore[arg-type]
        if not math.isfinite(f):
            return "NULL"
        text = repr(f)
        # 1.5 would be a DECIMAL literal in Spark; 1.5E0 is a DOUBLE in Spark and in Hive.
        return text if "e" in text else f"{text}E0"
    if type_ in ("BIGINT", "INT"):
        f = float(value)  # type: ignore[arg-type]
        if not f.is_integer():
            raise ValueError(f"{value!r} is not an integer")
        return str(int(f))
    if type_ == "BOOLEAN":
        return "TRUE" if bool(value) else "FALSE"
    if type_ == "DATE":
        return f"DATE '{pd.Timestamp(value).date().isoformat()}'"  # type: ignore[arg-type]
    if type_ == "TIMESTAMP":
        return f"TIMESTAMP '{pd.Timestamp(value).to_pydatetime().isoformat(sep=' ')}'"  # type: ignore[arg-type]
    raise TypeError(f"no literal for Hive type {type_}")


def values_rows(df: pd.DataFrame, columns: Sequence[tuple[str, str]]) -> list[str]:
    """One ``(v1, v2, ...)`` per row, in ``columns`` order (a column ``df`` lacks is NULL)."""
    parts = []
    for name, type_ in columns:
        if name in df.columns:
            parts.append([literal(v, type_) for v in df[name].tolist()])
        else:
            parts.append(["NULL"] * len(df))
    return ["(" + ", ".join(row) + ")" for row in zip(*parts, strict=True)] if parts else []


def _server_message(exc: BaseException) -> str:
    """pyhive puts the whole Thrift response in the exception; keep the server's errorMessage."""
    arg = exc.args[0] if exc.args else None
    status = getattr(arg, "status", None)
    message = getattr(status, "errorMessage", None)
    if message:
        return str(message)
    text = str(exc)
    found = re.search(r"errorMessage='(.*?)'\s*\)", text, re.S)
    return found.group(1) if found else text[:2000]


class _ShortenStatements(logging.Filter):
    """pyhive logs every statement at INFO; a 1 MB INSERT ... VALUES becomes one short line."""

    limit = 400

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                f"{a[: self.limit]}... ({len(a):,} chars)" if isinstance(a, str) and len(a) > self.limit else a
                for a in record.args
            )
        return True


_pyhive_log = logging.getLogger("pyhive.hive")
if not any(isinstance(f, _ShortenStatements) for f in _pyhive_log.filters):
    _pyhive_log.addFilter(_ShortenStatements())


class HiveStore:
    """Outputs in Hive, one (pipeline, cutoff_week) partition per output key, through a HiveServer2 hook."""

    def __init__(self, hook: HiveHook, chunk_rows: int = CHUNK_ROWS) -> None:
        self.hook = hook
        self.chunk_rows = chunk_rows

    def close(self) -> None:
        return None

    # -- statements -----------------------------------------------------------------------------

    def execute(self, statements: str | Sequence[str]) -> None:
        """Run statements in order on one connection (errors carry the server's message)."""
        statements = [statements] if isinstance(statements, str) else list(statements)
        if not statements:
            return
        for s in statements:
            log.debug("hive: %s", s if len(s) < 400 else f"{s[:400]}... ({len(s):,} chars)")
        # The provider logs each statement in full at INFO; a bulk INSERT would flood the task log.
        previous = getattr(self.hook, "log_sql", None)
        with contextlib.suppress(AttributeError):
            self.hook.log_sql = False  # type: ignore[attr-defined]
        try:
            self.hook.run(statements)
        except Exception as exc:
            first = statements[0] if len(statements) == 1 else f"{len(statements)} statements, first {statements[0]}"
            raise HiveStoreError(f"Hive statement failed: {_server_message(exc)} [{first[:300]}]") from exc
        finally:
            if previous is not None:
                self.hook.log_sql = previous  # type: ignore[attr-defined]

    def query(self, sql: str) -> pd.DataFrame:
        try:
            df = self.hook.get_df(sql)
        except Exception as exc:
            raise HiveStoreError(f"Hive query failed: {_server_message(exc)} [{sql[:300]}]") from exc
        # Hive prefixes columns with the table name ("t.sku"); keep the bare name.
        df.columns = [str(c).split(".")[-1].lower() for c in df.columns]
        return df

    def database_exists(self, schema: str) -> bool:
        names = self.query(f"SHOW DATABASES LIKE {string_literal(schema)}")  # Spark: namespace, Hive: database_name
        return not names.empty and schema.lower() in {str(n).lower() for n in names.iloc[:, 0]}

    def table_exists(self, table: str, schema: str | None) -> bool:
        if schema and not self.database_exists(schema):
            return False
        where = f" IN {quote_ident(schema)}" if schema else ""
        names = self.query(f"SHOW TABLES{where} LIKE {string_literal(table)}")
        column = "tablename" if "tablename" in names.columns else "tab_name"  # Spark, Hive
        return column in names.columns and table.lower() in {str(n).lower() for n in names[column]}

    def columns(self, table: str, schema: str | None) -> list[str]:
        """The table's columns in storage order (partition column last)."""
        where = f" IN {quote_ident(schema)}" if schema else ""
        df = self.query(f"SHOW COLUMNS IN {quote_ident(table)}{where}")
        return [str(c).strip().lower() for c in df.iloc[:, 0]]

    def _insert_chunks(self, target: str, columns: Sequence[tuple[str, str]], df: pd.DataFrame) -> list[str]:
        rows = values_rows(df, columns)
        return [
            f"INSERT INTO TABLE {target} VALUES " + ", ".join(rows[i : i + self.chunk_rows])
            for i in range(0, len(rows), self.chunk_rows)
        ]

    @contextlib.contextmanager
    def _staging(self, like: str, columns: Sequence[tuple[str, str]], schema: str | None) -> Iterator[str]:
        """A scratch table with ``columns``, dropped on exit."""
        name = qualified(f"{like}__stockml_stage_{uuid.uuid4().hex[:8]}", schema)
        cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
        self.execute(f"CREATE TABLE {name} ({cols}) STORED AS PARQUET")
        try:
            yield name
        finally:
            with contextlib.suppress(HiveStoreError):
                self.execute(f"DROP TABLE IF EXISTS {name}")

    # -- outputs --------------------------------------------------------------------------------

    def _recreate_if_legacy(self, table: str, schema: str | None) -> bool:
        """Rename an old-layout table (partitioned by run_id, no key columns) out of the way.

        True when it did: the table is then missing until :meth:`_ensure_output_table` creates it.
        """
        if not self.table_exists(table, schema) or set(PARTITION_COLUMNS) <= set(self.columns(table, schema)):
            return False
        legacy, n = f"{table}{LEGACY_SUFFIX}", 1
        while self.table_exists(legacy, schema):
            n += 1
            legacy = f"{table}{LEGACY_SUFFIX}_{n}"
        self.execute(f"ALTER TABLE {qualified(table, schema)} RENAME TO {qualified(legacy, schema)}")
        log.warning("Hive table %s was partitioned by run_id: renamed to %s, recreated", table, legacy)
        return True

    def _ensure_output_table(self, table: str, schema: str | None) -> list[tuple[str, str]]:
        """Create the table (partitioned by the output key), recreate an old-layout one, or add
        the columns a newer release defines.

        Returns the data columns (no partition column) with their types, in the table's order.
        """
        wanted = [(c.name, hive_type(c.type)) for c in output_tables(schema)[table].columns]
        data = [(n, t) for n, t in wanted if n not in PARTITION_COLUMNS]
        name = qualified(table, schema)
        cols = ", ".join(f"{quote_ident(n)} {t}" for n, t in data)
        parts = ", ".join(f"{quote_ident(p)} STRING" for p in PARTITION_COLUMNS)
        if schema:
            self.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(schema)}")
        self._recreate_if_legacy(table, schema)
        self.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols}) PARTITIONED BY ({parts}) STORED AS PARQUET")
        have = [c for c in self.columns(table, schema) if c not in PARTITION_COLUMNS]
        types = dict(data)
        missing = [(n, t) for n, t in data if n not in have]
        if missing:  # a table from an older release: additive migration, like the SQL store
            added = ", ".join(f"{quote_ident(n)} {t}" for n, t in missing)
            self.execute(f"ALTER TABLE {name} ADD COLUMNS ({added})")
        return [(n, types.get(n, "STRING")) for n in have] + missing

    def _partition(self, key: OutputKey) -> str:
        return f"PARTITION ({self._key_pairs(key, ', ')})"

    def _key_pairs(self, key: OutputKey, sep: str) -> str:
        """``pipeline`='...'<sep>`cutoff_week`='...'`` (a partition spec, or a WHERE with `` AND ``)."""
        values = (key.pipeline, key.cutoff_week)
        return sep.join(f"{quote_ident(c)}={string_literal(v)}" for c, v in zip(PARTITION_COLUMNS, values, strict=True))

    def write(self, table: str, df: pd.DataFrame, key: OutputKey, run_id: str, schema: str | None = None) -> int:
        """Replace the partition of ``key`` in ``table`` with ``df`` (written by ``run_id``); returns rows written."""
        check_output_table(table)
        columns = self._ensure_output_table(table, schema)
        frame = output_frame(table, df, key, run_id)
        name, part = qualified(table, schema), self._partition(key)
        if frame.empty:
            self.execute(f"ALTER TABLE {name} DROP IF EXISTS {part}")
            return 0
        if len(frame) <= self.chunk_rows:
            self.execute(f"INSERT OVERWRITE TABLE {name} {part} VALUES " + ", ".join(values_rows(frame, columns)))
            return len(frame)
        with self._staging(table, columns, schema) as stage:
            self.execute(self._insert_chunks(stage, columns, frame))
            select = ", ".join(quote_ident(c) for c, _ in columns)
            self.execute(f"INSERT OVERWRITE TABLE {name} {part} SELECT {select} FROM {stage}")
        return len(frame)

    def read(
        self, table: str, run_id: str | None = None, schema: str | None = None, key: OutputKey | None = None
    ) -> pd.DataFrame:
        """The rows of ``table`` (of one run, of one output key), columns and types as the SQL store returns them."""
        check_output_table(table)
        if self._recreate_if_legacy(table, schema):
            self._ensure_output_table(table, schema)
        t = output_tables(schema)[table]
        select = ", ".join(quote_ident(c.name) for c in t.columns)
        conditions = [f"`run_id` = {string_literal(run_id)}"] if run_id is not None else []
        if key is not None:
            conditions.append(self._key_pairs(key, " AND "))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        df = self.query(f"SELECT {select} FROM {qualified(table, schema)}{where}")
        for c in t.columns:  # pyhive hands DATE and TIMESTAMP over as strings
            if isinstance(c.type, sa.DateTime):
                df[c.name] = pd.to_datetime(df[c.name])
            elif isinstance(c.type, sa.Date):
                df[c.name] = pd.to_datetime(df[c.name]).dt.date
        return df

    def keys(self, table: str, schema: str | None = None) -> pd.DataFrame:
        """``pipeline, cutoff_week, created_at`` (the newest row's) per output key in ``table``; none without it."""
        columns = ["pipeline", "cutoff_week", "created_at"]
        if not self.table_exists(table, schema) or not set(PARTITION_COLUMNS) <= set(self.columns(table, schema)):
            return pd.DataFrame(columns=columns)
        df = self.query(
            f"SELECT `pipeline`, `cutoff_week`, max(`created_at`) AS created_at FROM {qualified(table, schema)} "
            "GROUP BY `pipeline`, `cutoff_week`"
        )
        return df.assign(created_at=pd.to_datetime(df["created_at"]))[columns]

    def prune_quarantine(self, older_than_days: int, schema: str | None = None) -> int:
        """Drop the quarantine rows older than the retention: whole partitions, or a partition rewritten."""
        table = "stock_quarantine"
        if not self.table_exists(table, schema):
            return 0
        if self._recreate_if_legacy(table, schema):  # the new table is empty; the old rows are kept aside
            self._ensure_output_table(table, schema)
            return 0
        limit = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=older_than_days)
        old = f"`created_at` < {literal(limit, 'TIMESTAMP')}"
        name = qualified(table, schema)
        stats = self.query(
            f"SELECT `pipeline`, `cutoff_week`, count(*) AS n, sum(CASE WHEN {old} THEN 1 ELSE 0 END) AS n_old "
            f"FROM {name} GROUP BY `pipeline`, `cutoff_week`"
        )
        removed = 0
        for pipeline, week, n, n_old in stats[["pipeline", "cutoff_week", "n", "n_old"]].itertuples(index=False):
            if not n_old:
                continue
            key = OutputKey(str(pipeline), str(week))
            if int(n_old) == int(n):
                self.execute(f"ALTER TABLE {name} DROP IF EXISTS {self._partition(key)}")
            else:  # rows of several ages in one partition (not written by this store): keep the young ones
                columns = self._ensure_output_table(table, schema)
                select = ", ".join(quote_ident(c) for c, _ in columns)
                where = self._key_pairs(key, " AND ")
                with self._staging(table, columns, schema) as stage:
                    self.execute(f"INSERT INTO TABLE {stage} SELECT {select} FROM {name} WHERE {where} AND NOT ({old})")
                    self.execute(f"INSERT OVERWRITE TABLE {name} {self._partition(key)} SELECT {select} FROM {stage}")
            removed += int(n_old)
        return removed

    # -- source tables (demo data) --------------------------------------------------------------

    def write_source_tables(
        self,
        products: pd.DataFrame,
        movements: pd.DataFrame,
        schema: str | None = None,
        price_promotions: pd.DataFrame | None = None,
    ) -> None:
        """Replace ``products`` and ``stock_movements`` (and ``price_promotions`` when given) (Parquet tables).

        Each is loaded into a new table first and swapped in with DROP + RENAME, so a failed
        load leaves the previous table untouched.
        """
        if schema:
            self.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(schema)}")
        movements = movements.assign(date=pd.to_datetime(movements["date"]).dt.date)
        tables = [("products", products), ("stock_movements", movements)]
        if price_promotions is not None:
            tables.append(
                ("price_promotions", price_promotions.assign(date=pd.to_datetime(price_promotions["date"]).dt.date))
            )
        for table, df in tables:
            columns = list(frame_types(df).items())
            load = f"{table}__stockml_load"
            cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns)
            self.execute(
                [
                    f"DROP TABLE IF EXISTS {qualified(load, schema)}",
                    f"CREATE TABLE {qualified(load, schema)} ({cols}) STORED AS PARQUET",
                    *self._insert_chunks(qualified(load, schema), columns, df),
                ]
            )
            self.execute(
                [
                    f"DROP TABLE IF EXISTS {qualified(table, schema)}",
                    f"ALTER TABLE {qualified(load, schema)} RENAME TO {qualified(table, schema)}",
                ]
            )
