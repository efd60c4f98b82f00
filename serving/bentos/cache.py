"""Cache of per-SKU forecasts: in-process LRU, or Redis when ``STOCKML_SERVING__REDIS_URL`` is set.

Key = (model name, version, the version's run id, SKU, hash of the history, horizon). The run
id makes keys unique across registries that share one Redis (version "1" of two registries
is not the same model). Values are the JSON-able forecast of one SKU, without the
``forecast_id`` (every response gets fresh ids). A Redis that fails is logged and skipped:
the request falls back to the in-process LRU, never to an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger("stockml.serving.cache")

PREFIX = "stockml:forecast:"
SCHEMA = 1  # bump when the cached value's shape changes (a shared Redis may hold older entries)


def history_hash(history: list[tuple[str, float]]) -> str:
    """Order-independent hash of a history: sorted (ISO date, value) pairs (one ``update`` of the
    joined ``ds=y;`` text: the same digest as feeding the pairs one by one)."""
    return hashlib.sha256("".join([f"{ds}={float(y)!r};" for ds, y in sorted(history)]).encode()).hexdigest()


def cache_key(model: str, version: str, run_id: str, sku: str, hist_hash: str, horizon: int) -> str:
    inner = hashlib.sha256(json.dumps([SCHEMA, model, version, run_id, sku, hist_hash, horizon]).encode()).hexdigest()
    return f"{PREFIX}{model}:{version}:{inner}"


class Cache(Protocol):
    backend: str

    def get_many(self, keys: list[str]) -> dict[str, Any]: ...

    def set_many(self, values: dict[str, Any]) -> None: ...


class LRUCache:
    backend = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max(0, max_entries)
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        out = {}
        with self._lock:
            for k in keys:
                if k in self._data:
                    self._data.move_to_end(k)
                    out[k] = self._data[k]
        return out

    def set_many(self, values: dict[str, Any]) -> None:
        if not self.max_entries:
            return
        with self._lock:
            for k, v in values.items():
                self._data[k] = v
                self._data.move_to_end(k)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)


class RedisCache:
    """Redis first; on a Redis error, the LRU (and retry Redis after ``retry_s``)."""

    backend = "redis"

    def __init__(self, url: str, ttl_s: int = 3600, fallback: LRUCache | None = None, retry_s: float = 30.0) -> None:
        import redis  # optional dependency: only needed when STOCKML_SERVING__REDIS_URL is set

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.ttl_s = ttl_s
        self.fallback = fallback or LRUCache()
        self.retry_s = retry_s
        self._down_until = 0.0
        self._errors = (redis.RedisError, OSError)

    def _usable(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        log.warning("Redis cache unavailable (%s); using the in-process cache for %.0f s", exc, self.retry_s)
        self._down_until = time.monotonic() + self.retry_s

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        if self._usable():
            try:
                raw = self.client.mget(keys)
                return {k: json.loads(v) for k, v in zip(keys, raw, strict=True) if v is not None}
            except self._errors as exc:
                self._failed(exc)
        return self.fallback.get_many(keys)

    def set_many(self, values: dict[str, Any]) -> None:
        if not values:
            return
        if self._usable():
            try:
                pipe = self.client.pipeline(transaction=False)
                for k, v in values.items():
                    pipe.set(k, json.dumps(v), ex=self.ttl_s)
                pipe.execute()
                return
            except self._errors as exc:
                self._failed(exc)
        self.fallback.set_many(values)


def make_cache(redis_url: str | None, max_entries: int, ttl_s: int, retry_s: float = 30.0) -> Cache:
    """The Redis cache (shared by every worker) with the LRU as its fallback, or only the LRU without ``redis_url``."""
    lru = LRUCache(max_entries)
    if not redis_url:
        return lru
    try:
        return RedisCache(redis_url, ttl_s, fallback=lru, retry_s=retry_s)
    except ImportError:
        log.warning("STOCKML_SERVING__REDIS_URL is set but the `redis` package is missing; using the in-process cache")
        return lru
