"""API keys (bearer tokens with a role) and per-key token-bucket rate limiting.

Keys come from ``STOCKML_AUTH__API_KEYS`` (comma-separated ``key:role`` or ``key:role:rate``) and/or
the file named by ``STOCKML_AUTH__API_KEYS_FILE`` (one entry per line, ``#`` comments), which is
re-read when it changes, so keys rotate without a restart. Roles: ``user`` (forecast,
classify, model info) and ``admin`` (everything, ``/admin/*`` included). The optional third
field overrides the per-second rate of that key (``STOCKML_AUTH__RATE_LIMIT_PER_S`` otherwise).

Keys are only held as SHA-256 digests; logs and rate-limit buckets use the first 12 hex
characters of the digest (``key_id``), never the key.

Rate limits: per worker process (:class:`RateLimiter`, a token bucket: ``rate`` per second, bursts
of ``2 x rate``), or, when ``STOCKML_SERVING__REDIS_URL`` is set, shared by every worker and replica through
Redis (:class:`RedisRateLimiter`: a fixed-window counter, ``INCR`` + ``PEXPIRE`` in one pipelined
round trip, same long-run rate and same burst). A Redis that fails is logged and the worker falls
back to its own bucket for ``retry_s`` seconds (``STOCKML_SERVING__REDIS_RETRY_S``): limits then hold
per worker, requests never fail because of it. This is a deliberate fail-over, not fail-open: a
Redis outage must neither take the service down nor lift every limit; the price is that N workers
let up to N x the rate through until Redis is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stockml.settings_serving import AuthSettings

log = logging.getLogger("stockml.serving.auth")

ROLES = ("user", "admin")


class KeyConfigError(ValueError):
    """An API key entry cannot be parsed (the message never contains the key)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: str
    rate_per_s: float | None = None  # None: the server default

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_entries(text: str, source: str) -> dict[str, ApiKey]:
    """``key:role[:rate]`` entries separated by commas or new lines -> {sha256(key): ApiKey}."""
    out: dict[str, ApiKey] = {}
    chunks = [c for line in text.splitlines() for c in line.split("#", 1)[0].split(",")]
    for n, raw in enumerate((c.strip() for c in chunks if c.strip()), start=1):
        parts = raw.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise KeyConfigError(f"{source}: entry {n} is not key:role or key:role:rate")
        key, role = parts[0], parts[1].strip().lower()
        if role not in ROLES:
            raise KeyConfigError(f"{source}: entry {n} has role {role!r}; expected one of {ROLES}")
        rate = None
        if len(parts) == 3:
            try:
                rate = float(parts[2])
            except ValueError:
                raise KeyConfigError(f"{source}: entry {n} has a rate that is not a number") from None
            if not (rate > 0 and math.isfinite(rate)):
                raise KeyConfigError(f"{source}: entry {n} needs a rate > 0")
        d = digest(key)
        out[d] = ApiKey(d[:12], role, rate)
    return out


class KeyStore:
    """The accepted keys: env entries plus the secrets file (re-read on change, checked every 5 s)."""

    def __init__(self, env_text: str = "", file: Path | None = None, check_every_s: float = 5.0) -> None:
        self._env = parse_entries(env_text, "STOCKML_AUTH__API_KEYS") if env_text.strip() else {}
        self._file = file
        self._check_every_s = check_every_s
        self._file_keys: dict[str, ApiKey] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._reload_file(force=True)

    @classmethod
    def from_settings(cls, auth: AuthSettings) -> KeyStore:
        """``STOCKML_AUTH__API_KEYS`` entries plus the ``STOCKML_AUTH__API_KEYS_FILE`` file."""
        return cls(auth.api_keys, auth.api_keys_file)

    def _reload_file(self, force: bool = False) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < self._check_every_s:
            return
        self._checked = now
        try:
            mtime = self._file.stat().st_mtime
        except OSError as exc:
            if force:
                raise KeyConfigError(f"STOCKML_AUTH__API_KEYS_FILE {self._file} cannot be read: {exc}") from exc
            log.warning("API key file %s cannot be read (%s); keeping the keys already loaded", self._file, exc)
            return
        if mtime == self._mtime:
            return
        try:
            keys = parse_entries(self._file.read_text(), str(self._file))
        except (OSError, KeyConfigError) as exc:
            if force:
                raise
            log.error("API key file %s is invalid (%s); keeping the keys already loaded", self._file, exc)
            return
        with self._lock:
            self._file_keys, self._mtime = keys, mtime
        log.info("loaded %d API key(s) from %s", len(keys), self._file)

    def __len__(self) -> int:
        self._reload_file()
        return len({**self._file_keys, **self._env})

    def lookup(self, token: str) -> ApiKey | None:
        self._reload_file()
        d = digest(token)
        return self._env.get(d) or self._file_keys.get(d)


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.updated = burst, time.monotonic()

    def take(self, now: float | None = None) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key id; burst = 2 x rate (at least 1 request). Per worker process."""

    backend = "memory"

    def __init__(self, default_rate: float) -> None:
        self.default_rate = default_rate
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key: ApiKey) -> float:
        """0.0 if allowed, else seconds to wait (for Retry-After). A rate <= 0 disables limiting."""
        rate = key.rate_per_s if key.rate_per_s is not None else self.default_rate
        if rate <= 0:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key.key_id)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[key.key_id] = TokenBucket(rate, max(1.0, 2 * rate))
            return bucket.take()

    async def acheck(self, key: ApiKey) -> float:
        """:meth:`check` for the middleware (same interface as :class:`RedisRateLimiter`)."""
        return self.check(key)


class RedisRateLimiter:
    """Per-key limits shared by all workers through Redis: a fixed-window counter.

    A key of rate ``r`` (requests/s) may make ``limit = max(1, floor(2 r))`` requests per window of
    ``limit / r`` seconds: the token bucket's burst (2 x rate) and its long-run rate. One pipelined
    round trip per request: ``INCR stockml:ratelimit:<key_id>:<window_ms>:<window number>`` and
    ``PEXPIRE`` (the window plus a second), so counters clean themselves up. Over the limit the
    answer is the time to the window's end (for ``Retry-After``). Windows are numbered from the Unix
    epoch, so workers agree on them as far as their clocks agree.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        default_rate: float,
        prefix: str = "stockml:ratelimit:",
        retry_s: float = 30.0,
        fallback: RateLimiter | None = None,
    ) -> None:
        import redis  # optional dependency: only needed when STOCKML_SERVING__REDIS_URL is set
        import redis.asyncio

        self.url = url
        self.default_rate = default_rate
        self.prefix = prefix
        self.retry_s = retry_s
        self.fallback = fallback or RateLimiter(default_rate)
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._new_client = lambda: redis.asyncio.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # one per event loop
        self._down_until = 0.0

    @staticmethod
    def window(rate: float) -> tuple[int, int]:
        """(requests allowed per window, window length in ms) for ``rate`` requests/s."""
        limit = max(1, int(2 * rate))
        return limit, max(1, round(limit / rate * 1000))

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._new_client()
        return client

    async def acheck(self, key: ApiKey) -> float:
        """0.0 if allowed, else seconds to wait. A rate <= 0 disables limiting."""
        rate = key.rate_per_s if key.rate_per_s is not None else self.default_rate
        if rate <= 0:
            return 0.0
        if time.monotonic() < self._down_until:
            return self.fallback.check(key)
        limit, window_ms = self.window(rate)
        now_ms = int(time.time() * 1000)
        slot = now_ms // window_ms
        name = f"{self.prefix}{key.key_id}:{window_ms}:{slot}"
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.incr(name)
            pipe.pexpire(name, window_ms + 1000)
            count, _ = await pipe.execute()
        except self._errors as exc:
            log.warning("Redis rate limiter unavailable (%s); per-worker limits for %.0f s", exc, self.retry_s)
            self._down_until = time.monotonic() + self.retry_s
            return self.fallback.check(key)
        if int(count) <= limit:
            return 0.0
        return max(0.001, ((slot + 1) * window_ms - now_ms) / 1000)


def make_rate_limiter(
    default_rate: float, redis_url: str | None, retry_s: float = 30.0
) -> RateLimiter | RedisRateLimiter:
    """Redis-backed (shared by the workers) when ``redis_url`` is set, else per process; after a Redis
    error the Redis one counts per worker for ``retry_s`` seconds (fail over, never fail open)."""
    if not redis_url:
        return RateLimiter(default_rate)
    try:
        return RedisRateLimiter(redis_url, default_rate, retry_s=retry_s)
    except ImportError:
        log.warning("STOCKML_SERVING__REDIS_URL is set but the `redis` package is missing; per-worker rate limits")
        return RateLimiter(default_rate)
