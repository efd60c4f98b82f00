"""API keys (bearer tokens with a role) and per-key token-bucket rate limiting.

Keys come from ``STOCKML_API_KEYS`` (comma-separated ``key:role`` or ``key:role:rate``) and/or
the file named by ``STOCKML_API_KEYS_FILE`` (one entry per line, ``#`` comments), which is
re-read when it changes, so keys rotate without a restart. Roles: ``user`` (forecast,
classify, model info) and ``admin`` (everything, ``/admin/*`` included). The optional third
field overrides the per-second rate of that key (``STOCKML_RATE_LIMIT_PER_S`` otherwise).

Keys are only held as SHA-256 digests; logs and rate-limit buckets use the first 12 hex
characters of the digest (``key_id``), never the key.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

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
        self._env = parse_entries(env_text, "STOCKML_API_KEYS") if env_text.strip() else {}
        self._file = file
        self._check_every_s = check_every_s
        self._file_keys: dict[str, ApiKey] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._reload_file(force=True)

    @classmethod
    def from_env(cls) -> KeyStore:
        path = os.environ.get("STOCKML_API_KEYS_FILE", "").strip()
        return cls(os.environ.get("STOCKML_API_KEYS", ""), Path(path) if path else None)

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
                raise KeyConfigError(f"STOCKML_API_KEYS_FILE {self._file} cannot be read: {exc}") from exc
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
    """One bucket per key id; burst = 2 x rate (at least 1 request)."""

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
