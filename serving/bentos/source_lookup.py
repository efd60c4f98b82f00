"""Tables the service reads through the source connection, each kept for a while: one loader shape.

The pipeline publishes to the source database (``stock_related``, ``stock_weekly_demand``,
``stock_weekly_inventory``, beside the source's ``products``); the service reads them through the
same Airflow connection as the pipeline, never from a run folder, so it can run on another machine.
A :class:`TtlLookup` loads on first use and again after ``ttl_s`` seconds; a failed read keeps the
previous value and is logged (the answers that do not need the table are still worth giving).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from stockml.settings import Settings

log = logging.getLogger("stockml.serving")

T = TypeVar("T")
DEFAULT_TTL_S = 300.0


def source_hook(settings: Settings) -> Any:
    """The hook of the settings' source connection (the default SQLite source registered when unset)."""
    from stockml.connections import ensure_default_source, get_hook

    ensure_default_source(settings.source_conn_id, settings.default_source_db)
    return get_hook(settings.source_conn_id)


class TtlLookup(Generic[T]):
    """A value loaded by ``load`` on first use and again after ``ttl_s`` seconds (``empty`` until a load works)."""

    what = "a source table"

    def __init__(self, load: Callable[[], T], empty: T, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._value: T = empty
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self.ttl_s:
                try:
                    self._value = self._load()
                except Exception as exc:
                    log.warning("%s could not be read (keeping the previous value): %s", self.what, exc)
                self._loaded_at = now
            return self._value
