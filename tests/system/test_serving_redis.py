"""System test: the service with two worker processes sharing a real Redis, and Redis dying under load.

``bentoml serve`` runs the production service with ``STOCKML_SERVING__WORKERS=2`` (two processes
on one socket; each answer names its worker in ``X-Stockml-Worker``) and
``STOCKML_SERVING__REDIS_URL`` pointed at a throw-away ``redis-server`` this module starts on a free
port (never the machine's Redis on 6379, which other tests share). Every request goes on a fresh
connection, so the kernel hands requests to both workers; the tests check which one answered.

- A forecast computed by one worker is a cache hit (``cached: true``) in the other, and the key is in Redis.
- The rate limit of a key is counted over both workers: in each window exactly ``limit`` requests
  pass and every other one gets 429 with ``Retry-After``, though both workers took requests.
- Redis killed (SIGKILL) in the middle of concurrent load: no 5xx and no dropped connection; the
  workers fall back to their in-process cache and per-worker rate limits (documented in
  :mod:`serving.bentos.auth`: fail over, not fail open: a burst of a limited key still gets 429s
  while Redis is away), and use Redis again once it is back.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from redis_server import ThrowawayRedis
from serving_helpers import (
    START_TIMEOUT_S,
    auth,
    bentoml_serve,
    champion_registry,
    forecast_items,
    service_env,
    wait_ready,
)

from bench.serving_stack import ISOLATE_VARS
from serving.bentos.auth import RedisRateLimiter

pytestmark = pytest.mark.slow

EXPERIMENT = "stockml-router-redis-test"
USER = "redis-user-1"
LIMITED, LIMITED_RATE = "redis-limited-1", 5.0  # 5 requests/s: 10 per window of 2 s, summed over the workers
RETRY_S = 1.0  # STOCKML_SERVING__REDIS_RETRY_S: how long a worker stays on its fallback after a Redis error


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with ThrowawayRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def service(router_data, tmp_path_factory, redis_server):
    tmp = tmp_path_factory.mktemp("redis-serving")
    with champion_registry(router_data, tmp, EXPERIMENT) as uri:
        yield from _serve(tmp, uri, redis_server, router_data["demand"])


def _serve(tmp, uri: str, redis_server, demand):
    """`bentoml serve` with two workers on the registry `uri` and the throw-away Redis; both answering."""
    env = service_env(
        tmp,
        uri,
        f"{USER}:user,{LIMITED}:user:{LIMITED_RATE:g}",
        isolate=tuple(v for v in ISOLATE_VARS if v != "STOCKML_SERVING__REDIS_URL"),
        STOCKML_SERVING__WORKERS="2",
        STOCKML_SERVING__REDIS_URL=redis_server.url,
        STOCKML_SERVING__REDIS_RETRY_S=str(RETRY_S),
        STOCKML_SERVING__POLL_S="0",
    )
    log_path = tmp / "bentoml-serve.log"
    with bentoml_serve(env, log_path) as (proc, url):
        wait_ready(url, proc, log_path, timeout=START_TIMEOUT_S)
        seen: set[str] = set()
        deadline = time.monotonic() + START_TIMEOUT_S  # /readyz answers as soon as one worker is ready
        while len(seen) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"two ready workers never answered ({seen}): {log_path.read_text()[-3000:]}")
            r = httpx.get(f"{url}/readyz", timeout=10)
            if r.status_code == 200:
                seen.add(r.headers["x-stockml-worker"])
        yield {"url": url, "log": log_path, "demand": demand, "proc": proc}


def _post(url: str, path: str, key: str, json: dict) -> httpx.Response:
    """One request on its own connection, so that either worker may take it."""
    with httpx.Client(base_url=url, timeout=120, headers=auth(key)) as c:
        return c.post(path, json=json)


def _worker(r: httpx.Response) -> str:
    return r.headers["x-stockml-worker"].split(":")[0]


def _item(base: dict, sku: str, bump: float = 0.0) -> dict:
    """``base``'s history under another SKU name (and its last week bumped): a forecast no one cached yet."""
    history = [dict(p) for p in base["history"]]
    history[-1]["y"] += bump
    return {"sku": sku, "history": history}


def _cache_hits(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(r'^stockml_forecast_cache_total\{[^}]*result="hit"[^}]*\}\s+([0-9.e+]+)$', text, re.M)
    return sum(float(v) for v in found)


def test_a_forecast_computed_by_one_worker_is_a_cache_hit_in_the_other(service, redis_server):
    url = service["url"]
    base = forecast_items(service["demand"], 1)[0]
    hits_before = _cache_hits(url)
    crossed = 0
    for n in range(6):
        payload = {"items": [_item(base, f"shared-{n}")], "horizon": 4}
        first = _post(url, "/forecast", USER, payload)
        assert first.status_code == 200, first.text[:500]
        assert first.json()["items"][0]["cached"] is False
        computed_by = _worker(first)
        for _ in range(200):  # until the other worker takes one (the kernel picks; it soon does)
            again = _post(url, "/forecast", USER, payload)
            assert again.status_code == 200, again.text[:500]
            assert again.json()["items"][0]["cached"] is True
            if _worker(again) != computed_by:
                crossed += 1
                assert again.json()["items"][0]["forecasts"] == first.json()["items"][0]["forecasts"]
                break
        else:
            pytest.fail(f"200 requests on new connections were all answered by worker {computed_by}")
    assert crossed == 6
    # The entries are in the throw-away Redis (one per SKU and model version), not only in a worker.
    assert len(redis_server.client().keys("stockml:forecast:*")) >= 6
    # Prometheus counts the hits of both workers (BentoML's multiprocess metrics).
    assert _cache_hits(url) - hits_before >= crossed


def _connections(url: str, key: str, n: int) -> list[httpx.Client]:
    """``n`` open keep-alive connections that between them reach both workers (checked on ``/healthz``)."""
    for _ in range(50):
        clients = [httpx.Client(base_url=url, timeout=120, headers=auth(key)) for _ in range(n)]
        if len({_worker(c.get("/healthz")) for c in clients}) == 2:
            return clients
        for c in clients:
            c.close()
    pytest.fail(f"50 times {n} connections all reached one worker")


def _burst(clients: list[httpx.Client], per_connection: int) -> list[httpx.Response]:
    """``per_connection`` requests of ``/model_info`` on each connection, all connections at once."""
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        batches = pool.map(lambda c: [c.post("/model_info", json={}) for _ in range(per_connection)], clients)
        return [x for batch in batches for x in batch]


def test_b_the_rate_limit_is_counted_over_both_workers(service, redis_server):
    limit, window_ms = RedisRateLimiter.window(LIMITED_RATE)
    assert (limit, window_ms) == (10, 2000)
    key_id = hashlib.sha256(LIMITED.encode()).hexdigest()[:12]
    r = redis_server.client()
    n, per_connection = 3 * limit, 3
    for _attempt in range(5):
        for k in r.keys(f"stockml:ratelimit:{key_id}:*"):
            r.delete(k)
        clients = _connections(service["url"], LIMITED, n // per_connection)  # opened before the window
        try:
            # Start just after a window opens, so the burst mostly falls in one window (on a loaded
            # machine it may reach into the next: the counters in Redis say how it fell, per window).
            time.sleep((window_ms - time.time() * 1000 % window_ms) / 1000 + 0.02)
            responses = _burst(clients, per_connection)
        finally:
            for c in clients:
                c.close()
        windows = {k.decode(): int(r.get(k)) for k in r.keys(f"stockml:ratelimit:{key_id}:{window_ms}:*")}
        assert windows, "the service counted nothing in Redis: its rate limits are not shared"
        if max(windows.values()) > limit:  # at least one window was over its limit: a burst to judge
            break
    else:
        pytest.fail(f"no burst of {n} requests put more than {limit} into one {window_ms} ms window in 5 attempts")
    codes = Counter(x.status_code for x in responses)
    by_worker = Counter(_worker(x) for x in responses)
    assert sum(windows.values()) == n, windows  # every request of both workers was counted in Redis
    assert len(by_worker) == 2, by_worker  # both workers took requests ...
    # ... yet in each window exactly `limit` passed in all (or all, when fewer came): per-worker
    # buckets (burst 2 x rate each) would let up to twice that through.
    passed = sum(min(count, limit) for count in windows.values())
    assert codes == {200: passed, 429: n - passed}, (codes, windows)
    for x in responses:
        if x.status_code == 429:
            assert int(x.headers["retry-after"]) >= 1, x.headers
            assert x.json()["error"] == "rate limit exceeded"
            assert 0 < x.json()["retry_after_s"] <= window_ms / 1000


def test_c_redis_killed_under_load_gives_no_5xx_and_redis_is_used_again_when_back(service, redis_server):
    url = service["url"]
    base = forecast_items(service["demand"], 3)
    outcomes: list[tuple[str, int | str, str]] = []  # (phase, status or transport error, worker)
    phase = ["redis up"]
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        i = 0
        with httpx.Client(base_url=url, timeout=60, headers=auth(USER)) as c:
            while not stop.is_set():
                i += 1
                # a mix: a few repeated (cached) payloads and new ones (computed, then cached)
                item = _item(base[i % 3], f"load-{n}-{i % 5 if i % 2 else i}", bump=float(i % 2))
                try:
                    r = c.post("/forecast", json={"items": [item], "horizon": 4}, headers={"Connection": "close"})
                    result: tuple = (phase[0], r.status_code, _worker(r))
                except httpx.TransportError as exc:
                    result = (phase[0], f"{type(exc).__name__}: {exc}", "")
                with lock:
                    outcomes.append(result)

    def count(name: str) -> int:
        with lock:
            return sum(1 for p, _, _ in outcomes if p == name)

    def wait_for(name: str, at_least: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while count(name) < at_least:
            assert time.monotonic() < deadline, f"only {count(name)} answers in phase {name!r}"
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    try:
        wait_for("redis up", 40)
        phase[0] = "redis down"
        redis_server.kill()
        wait_for("redis down", 80)
        # While Redis is away the limits fail over to each worker's own bucket; they do not switch off.
        clients = _connections(url, LIMITED, 10)
        try:
            limited = Counter(x.status_code for x in _burst(clients, 6))
        finally:
            for c in clients:
                c.close()
        phase[0] = "redis back"
        redis_server.start()
        wait_for("redis back", 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    by_phase = {p: Counter(s for q, s, _ in outcomes if q == p) for p in ("redis up", "redis down", "redis back")}
    for p, codes in by_phase.items():
        assert set(codes) == {200}, (p, codes)  # no 5xx, no 429, no reset connection: Redis is optional
    workers_down = {w for p, _, w in outcomes if p == "redis down"}
    assert workers_down == {"1", "2"}, workers_down  # both workers went through the fallback
    # 60 requests of a key allowed 5/s (bursts of 10 per worker bucket): some pass, the rest get 429
    assert set(limited) == {200, 429}, limited

    # Back in business: once RETRY_S has passed, new forecasts land in the new (empty) Redis again and
    # the rate limits count there, and a forecast computed by one worker is a hit in the other.
    fresh = redis_server.client()
    deadline = time.monotonic() + 60
    n = 0
    while not (fresh.keys("stockml:forecast:*") and fresh.keys("stockml:ratelimit:*")):
        assert time.monotonic() < deadline, "the service never wrote to the restarted Redis"
        n += 1
        assert _post(url, "/forecast", USER, {"items": [_item(base[0], f"after-{n}")]}).status_code == 200
        time.sleep(0.2)
    time.sleep(2 * RETRY_S)  # both workers past their fallback period
    payload = {"items": [_item(base[1], "after-shared")], "horizon": 4}
    first = _post(url, "/forecast", USER, payload)
    assert first.status_code == 200 and first.json()["items"][0]["cached"] is False
    for _ in range(200):
        again = _post(url, "/forecast", USER, payload)
        if _worker(again) != _worker(first):
            assert again.json()["items"][0]["cached"] is True
            break
    else:
        pytest.fail("the other worker never answered")
    log = service["log"].read_text(errors="replace")
    assert "Redis cache unavailable" in log and "Redis rate limiter unavailable" in log
    assert "Traceback" not in log, log[-5000:]
