"""Database access through Airflow's provider hooks, so one code path serves every backend.

The platform never opens database connections by hand: given an Airflow connection id
(``AIRFLOW_CONN_<ID>`` in the environment, a secrets backend, or the metadata DB) it asks
Airflow for the provider hook (SqliteHook, PostgresHook, HiveServer2Hook). A URI is
accepted too, for one-off targets such as ``stockml demo-data --target postgresql://...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_CONN_ID = "stockml_source"


class SourceConnectionError(RuntimeError):
    """Raised with a message that tells the user how to fix the connection."""


def sqlite_conn_json(path: Path) -> str:
    """The Airflow connection (JSON form) of a SQLite database file."""
    return json.dumps({"conn_type": "sqlite", "host": str(Path(path).resolve())})


def ensure_default_source(conn_id: str, default_db: Path) -> None:
    """Point ``conn_id`` at the embedded SQLite demo database unless the user defined it."""
    env = f"AIRFLOW_CONN_{conn_id.upper()}"
    if conn_id == DEFAULT_CONN_ID and env not in os.environ:
        default_db.parent.mkdir(parents=True, exist_ok=True)
        os.environ[env] = sqlite_conn_json(default_db)


def _uri_to_conn_json(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return sqlite_conn_json(Path(uri.removeprefix("sqlite:///")))
    if uri.endswith((".db", ".sqlite", ".sqlite3")) and "://" not in uri:
        return sqlite_conn_json(Path(uri))
    return uri  # Airflow parses postgresql://, hiveserver2://, ... itself


def get_hook(target: str) -> Any:
    """Return the provider hook for an Airflow connection id or a database URI/path."""
    from airflow.sdk import BaseHook  # imported lazily: Airflow takes seconds to import

    conn_id = target
    if "://" in target or target.endswith((".db", ".sqlite", ".sqlite3")):
        conn_id = "stockml_adhoc_" + str(abs(hash(target)))
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = _uri_to_conn_json(target)
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found types, which differ by version
        raise SourceConnectionError(
            f"Airflow connection '{conn_id}' is not defined. Set AIRFLOW_CONN_{conn_id.upper()} "
            "(for example 'postgresql://user:pass@host:5432/db') or pass a database URI."
        ) from exc
    try:
        return conn.get_hook()
    except Exception as exc:
        raise SourceConnectionError(
            f"Connection '{conn_id}' has type '{conn.conn_type}', which has no usable hook: {exc}. "
            "Supported: sqlite, postgres, hiveserver2."
        ) from exc
