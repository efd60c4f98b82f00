"""Related products for ``/classify``: the rules of ``stock_related``, read through the source connection.

The ingest step writes the rules (:mod:`stockml.steps.related`); the service reads the latest set
(the newest data cut-off) through the same Airflow connection as the pipeline, never from a run
folder, and keeps it for ``ttl_s`` seconds. A source without ``stock_related`` (no order lines)
gives every SKU an empty list; a failed read keeps the previous set and is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stockml.settings import Settings

log = logging.getLogger("stockml.serving")

RelatedMap = dict[str, list[dict]]
DEFAULT_TTL_S = 300.0
MAX_RELATED = 10


def source_loader(settings: Settings) -> Callable[[], RelatedMap]:
    """Read ``stock_related`` through the settings' source connection."""

    def load() -> RelatedMap:
        from stockml.connections import ensure_default_source, get_hook
        from training.data.related_store import latest_related, related_by_sku

        ensure_default_source(settings.source_conn_id, settings.default_source_db)
        rules = latest_related(get_hook(settings.source_conn_id), settings.source_schema)
        return related_by_sku(rules, MAX_RELATED)

    return load


class RelatedLookup:
    """{sku: [{sku, confidence, lift}, ...]}, loaded on first use and again after ``ttl_s`` seconds."""

    def __init__(self, load: Callable[[], RelatedMap], ttl_s: float = DEFAULT_TTL_S) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._map: RelatedMap = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RelatedLookup:
        return cls(source_loader(settings))

    def get(self) -> RelatedMap:
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self.ttl_s:
                try:
                    self._map = self._load()
                except Exception as exc:  # the classes are still worth answering
                    log.warning("stock_related could not be read (keeping %d SKUs' rules): %s", len(self._map), exc)
                self._loaded_at = now
            return self._map
