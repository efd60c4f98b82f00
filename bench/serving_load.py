"""The load run of :mod:`bench.serving` (``--load-seconds``): many closed-loop clients on ``/forecast`` for a
fixed time, cached and uncached requests mixed, with the service's memory before and after.

- ``clients`` concurrent clients (one keep-alive aiohttp connection each, one event loop) post for
  ``seconds``; each request is, with probability ``fresh_share``, a SKU history never sent before (its
  forecast is computed by the model and then cached), otherwise one of ``pool`` histories answered from
  the cache (all sent once before the run starts);
- per kind (cached / fresh) and in all: requests, status counts, transport errors, p50/p99 of the answered
  (200) requests, throughput; ``5xx`` counts every answer >= 500 (the target is 0);
- the resident memory (RSS, psutil) of each process of the service (the ``bentoml serve`` arbiter and its
  worker) before the run (after the warm-up) and after it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil


def series(sku: str, weeks: int, rng: np.random.Generator) -> dict[str, Any]:
    """One SKU's weekly history (Poisson demand, mean 5) from 2022-01-03."""
    start = np.datetime64("2022-01-03")
    ys = rng.poisson(5.0, weeks).astype(float)
    return {
        "sku": sku,
        "history": [{"ds": str(start + np.timedelta64(7 * i, "D")), "y": float(y)} for i, y in enumerate(ys)],
    }


def body(item: dict[str, Any], horizon: int) -> bytes:
    return json.dumps({"items": [item], "horizon": horizon}).encode()


def rss_mb(pid: int | None) -> dict[str, float] | None:
    """RSS in MB of ``pid`` and each of its descendants, keyed ``"<name> <pid>"``; None without a pid."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    out: dict[str, float] = {}
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
            name = "worker" if "_bentoml_impl.worker" in cmd else ("circusd" if "circusd" in cmd else p.name())
            out[f"{name} {p.pid}"] = round(p.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            pass
    return out


def _stats(lat: list[float], statuses: dict[str, int], wall: float) -> dict[str, Any]:
    arr = np.asarray(lat) * 1000 if lat else np.asarray([np.nan])
    return {
        "requests": int(sum(statuses.values())),
        "ok": len(lat),
        "statuses": dict(sorted(statuses.items())),
        "5xx": int(sum(n for code, n in statuses.items() if code.isdigit() and int(code) >= 500)),
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }


async def _run(
    url: str,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    fresh_share: float,
    pool: int,
    seed: int,
    warmed: Callable[[], None],
) -> dict[str, Any]:
    import aiohttp

    horizon, weeks = 13, 104
    rng = np.random.default_rng(seed)
    cached = [body(series(f"LOAD-{i}", weeks, rng), horizon) for i in range(pool)]
    hdrs = {**headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients, limit_per_host=clients, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=120)
    lat: dict[str, list[float]] = {"cached": [], "fresh": []}
    statuses: dict[str, dict[str, int]] = {"cached": {}, "fresh": {}}
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout, headers=hdrs) as session:

        async def post(raw: bytes) -> str:
            try:
                async with session.post("/forecast", data=raw) as r:
                    await r.read()
                    return str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        for i in range(0, pool, clients):  # warm: every pooled history answered once (then it is cached)
            await asyncio.gather(*(post(raw) for raw in cached[i : i + clients]))
        warmed()
        fresh_n = [0]
        stop = time.perf_counter() + seconds

        async def client(k: int) -> None:
            crng = np.random.default_rng([seed, k])
            while time.perf_counter() < stop:
                if crng.random() < fresh_share:
                    kind, fresh_n[0] = "fresh", fresh_n[0] + 1
                    raw = body(series(f"FRESH-{k}-{fresh_n[0]}", weeks, crng), horizon)
                else:
                    kind, raw = "cached", cached[int(crng.integers(pool))]
                t0 = time.perf_counter()
                code = await post(raw)
                if code == "200":
                    lat[kind].append(time.perf_counter() - t0)
                statuses[kind][code] = statuses[kind].get(code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    total: dict[str, int] = {}
    for part in statuses.values():
        for code, n in part.items():
            total[code] = total.get(code, 0) + n
    return {
        "seconds": round(wall, 2),
        **_stats(lat["cached"] + lat["fresh"], total, wall),
        "cached": _stats(lat["cached"], statuses["cached"], wall),
        "fresh": _stats(lat["fresh"], statuses["fresh"], wall),
    }


def load_run(
    url: str,
    headers: dict[str, str],
    *,
    clients: int = 64,
    seconds: float = 60.0,
    fresh_share: float = 0.1,
    pool: int = 256,
    seed: int = 5,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """The load run against a running service (``server_pid``: the ``bentoml serve`` process, for its RSS)."""
    config = {"clients": clients, "seconds": seconds, "fresh_share": fresh_share, "cached_pool": pool, "seed": seed}
    config["payload"] = {"skus": 1, "weeks": 104, "horizon": 13}
    readings: dict[str, dict[str, float] | None] = {"rss_mb_start": rss_mb(server_pid)}

    def warmed() -> None:  # the pooled histories are cached now: the reading the run is compared with
        readings["rss_mb_before"] = rss_mb(server_pid)

    result = asyncio.run(_run(url, headers, clients, seconds, fresh_share, pool, seed, warmed))
    before, after = readings.get("rss_mb_before"), rss_mb(server_pid)
    out: dict[str, Any] = {"config": config, **result, **readings, "rss_mb_after": after}
    if before and after:
        common = before.keys() & after.keys()
        out["rss_growth_mb"] = {k: round(after[k] - before[k], 1) for k in sorted(common)}
    return out
