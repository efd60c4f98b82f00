"""Serving benchmark: ``/forecast`` latency and throughput against a trivial BentoML service, and a batch job.

What it measures, on this machine:

- single-SKU ``/forecast`` (104 weeks of history, horizon 13, answered from the cache after the first
  call) at 1, 16 and 64 concurrent clients for ``--seconds`` each: requests/s, p50 and p99 latency;
- the same load against :class:`Echo`, a BentoML service in the same framework and server whose
  ``/forecast`` returns its input (no auth, validation or model): the framework's ceiling here;
  our throughput is reported as a fraction of it;
- the wall time of a ``--batch-skus`` SKU batch job (upload of the CSV → ``done``), and its progress steps.

The service runs with its production middlewares and HTTP layer (API key, rate limit set out of the
way, body limits, FastAPI routes validating each body once). Without ``--url`` a small router is
trained on demo data, registered in a temporary SQLite registry and promoted, and both services are
started with ``bentoml serve`` on free ports; with ``--url`` (and ``--key``) a running service is
measured instead (it must have a champion).

Load set-up (the same for the echo ceiling and for our service):

- the load generator is this process: one asyncio event loop with ``--client aiohttp`` (default;
  one keep-alive connection per concurrent client, C HTTP parser) or ``--client httpx`` (what
  earlier figures used: httpx costs several times more CPU per request, so on a small machine the
  client itself was a large part of what was measured);
- ``--pin`` (default when the machine has at least 2 CPUs; ``--no-pin`` to turn it off): during the
  latency runs the server's whole process tree (every thread of the ``bentoml serve`` arbiter and
  its worker) is pinned to all CPUs but the last, and the load generator to the last one, so the
  client and the server do not preempt each other (on 2 cores: server on CPU 0, client on CPU 1;
  one service worker is one Python process, so it uses about one core anyway). The echo service
  is pinned the same way. The affinity is reset to all CPUs before the batch job, which uses them.
  With ``--url`` nothing is pinned but the client (the server is not ours to pin);
- each level opens its connections first (one request per client), then runs ``--seconds``.

- ``--load-seconds S`` adds a load run (:mod:`bench.serving_load`): ``--load-clients`` closed-loop
  clients on ``/forecast`` for S seconds, a ``--load-fresh`` share of them with a history never sent
  before (computed by the model), the rest answered from the cache; status counts (5xx), p50/p99,
  throughput, and the RSS of the service's processes before and after (JSON key ``load_run``).

Example::

    python -m bench.serving --seconds 10 --batch-skus 10000 --out /tmp/serving_bench.json
    python -m bench.serving --seconds 10 --skip-batch                     # latency/throughput only
    python -m bench.serving --skip-levels --skip-batch --load-seconds 60  # the load run only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import psutil

from bench.serving_load import series
from bench.serving_stack import ISOLATE_VARS, SERVICE, serve, stop, wait_ready

KEY = "bench-key"


@bentoml.service(name="stockml_echo", traffic={"timeout": 120}, threads=4)
class Echo:
    """The ceiling: same framework and server, an API that returns its input."""

    @bentoml.api(route="/forecast")
    def forecast(self, items: list[dict[str, Any]], horizon: int = 13) -> dict[str, Any]:
        return {"items": items, "horizon": horizon}


@bentoml.service(name="stockml_echo_async", traffic={"timeout": 120}, threads=4)
class EchoAsync:
    """The same ceiling with an async API: no thread-pool hop (``--echo async``).

    Our cached ``/forecast`` path is async, so this is the like-for-like ceiling for it; the sync
    ``Echo`` is what a plain BentoML API costs.
    """

    @bentoml.api(route="/forecast")
    async def forecast(self, items: list[dict[str, Any]], horizon: int = 13) -> dict[str, Any]:
        return {"items": items, "horizon": horizon}


# ---------------------------------------------------------------- servers


def _serve(target: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    return serve(target, env, log.open("w"))


def _register_router(home: Path) -> str:
    """Train a small router on demo data, register it in a SQLite registry under ``home`` and promote it."""
    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting.backtest import backtest
    from training.forecasting.zoo import ModelZoo
    from training.registry import mlflow_registry as reg
    from training.router.predict import RouterModel
    from training.router.train import train_router

    cat = generate_catalogue(80, 120, seed=7, dirty_rows=False)
    demand = to_weekly_demand(cat.movements)
    methods = ["Naive2", "SES", "Theta", "TSB", "CrostonSBA", "ADIDA"]
    bt = backtest(demand, ModelZoo(methods=methods, n_jobs=1), h=8, n_windows=3)
    t = train_router(demand, bt, season_length=52)
    model = RouterModel.from_training(t)
    skus = list(t.holdout_forecasts["unique_id"].unique())[:10]
    holdout = reg.split_holdout(demand, t.holdout_cutoff, t.horizon, skus)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    reg.configure(uri, "stockml-serving-bench", home / "artifacts")
    v = reg.log_router(model, params={}, metrics={"holdout_mase_router": 1.0}, tags={}, holdout=holdout)
    assert reg.promote(version=v.version, force=True).promoted
    return uri


# ---------------------------------------------------------------- load


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): all but the last CPU for the servers, the last for the client."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


def pin_tree(pid: int, cpus: set[int] | None) -> int:
    """Set the CPU affinity of every thread of ``pid`` and its descendants (None: all CPUs);
    threads created later inherit it. Returns the number of threads pinned."""
    cpus = cpus or os.sched_getaffinity(0)
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    n = 0
    for proc in procs:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
                n += 1
            except OSError:  # the thread ended meanwhile
                pass
    return n


async def _load(
    url: str, headers: dict[str, str], payload: bytes, concurrency: int, seconds: float, client: str
) -> dict:
    if client == "httpx":
        return await _load_httpx(url, headers, payload, concurrency, seconds)
    import aiohttp

    hdrs = {**headers, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, keepalive_timeout=120)
    async with aiohttp.ClientSession(
        base_url=url, connector=connector, timeout=aiohttp.ClientTimeout(total=60), headers=hdrs
    ) as session:

        async def post() -> str:
            try:
                async with session.post("/forecast", data=payload) as r:
                    await r.read()
                    return str(r.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        await asyncio.gather(*(post() for _ in range(concurrency)))  # open the connections, warm the cache
        return await _drive(post, concurrency, seconds)


async def _drive(post, concurrency: int, seconds: float) -> dict:
    """``concurrency`` closed-loop clients calling ``post()`` (returns the status as text) for ``seconds``."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            code = await post()
            if code == "200":
                lat.append(time.perf_counter() - t0)
            else:
                errors[code] = errors.get(code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _summary(concurrency, lat, errors, time.perf_counter() - t0)


def _summary(concurrency: int, lat: list[float], errors: dict[str, int], wall: float) -> dict:
    arr = np.asarray(lat) * 1000 if lat else np.asarray([np.nan])
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": errors,
        "seconds": round(wall, 2),
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
    }


async def _load_httpx(url: str, headers: dict[str, str], payload: bytes, concurrency: int, seconds: float) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    hdrs = {**headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for _ in range(min(concurrency, 4)):  # warm the connection pool and the cache
            await client.post("/forecast", content=payload, headers=hdrs)

        async def post() -> str:
            try:
                r = await client.post("/forecast", content=payload, headers=hdrs)
                return str(r.status_code)
            except httpx.HTTPError as exc:
                return type(exc).__name__

        return await _drive(post, concurrency, seconds)


def _run_levels(url: str, headers: dict[str, str], body: bytes, args: argparse.Namespace, client_cpus) -> list[dict]:
    """The latency runs, with this process (the load generator) on ``client_cpus`` meanwhile."""
    before = os.sched_getaffinity(0)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    try:
        return [asyncio.run(_load(url, headers, body, c, args.seconds, args.client)) for c in args.concurrency]
    finally:
        os.sched_setaffinity(0, before)


def _run_load(url: str, headers: dict[str, str], args: argparse.Namespace, client_cpus, pid: int | None) -> dict:
    """The load run (:mod:`bench.serving_load`), with this process on ``client_cpus`` meanwhile."""
    from bench.serving_load import load_run

    before = os.sched_getaffinity(0)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    try:
        return load_run(
            url,
            headers,
            clients=args.load_clients,
            seconds=args.load_seconds,
            fresh_share=args.load_fresh,
            server_pid=pid,
        )
    finally:
        os.sched_setaffinity(0, before)


def _batch_csv(n: int, weeks: int, seed: int) -> bytes:
    """``n`` SKUs of weekly demand, a mix of smooth and intermittent series."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.5, 4.0, n)
    p_sale = np.where(rng.random(n) < 0.4, rng.uniform(0.1, 0.6, n), 1.0)
    y = rng.poisson(rate[:, None], (n, weeks)) * (rng.random((n, weeks)) < p_sale[:, None])
    ds = pd.date_range("2022-01-03", periods=weeks, freq="W-MON").strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {"sku": np.repeat([f"SKU{i:05d}" for i in range(n)], weeks), "ds": np.tile(ds, n), "y": y.ravel()}
    )
    return frame.to_csv(index=False).encode()


def _batch(url: str, headers: dict[str, str], n: int, weeks: int, horizon: int) -> dict:
    import httpx

    raw = _batch_csv(n, weeks, 11)
    with httpx.Client(base_url=url, headers=headers, timeout=600) as c:
        t0 = time.perf_counter()
        r = c.post("/batch", files={"file": ("bench.csv", raw, "text/csv")}, data={"horizon": str(horizon)})
        r.raise_for_status()
        upload_s = time.perf_counter() - t0
        job = r.json()
        steps = 0
        last = -1.0
        while True:
            st = c.post("/batch_status", json={"job_id": job["job_id"]}).json()
            if st["progress"] != last:
                steps, last = steps + 1, st["progress"]
            if st["state"] in ("done", "failed"):
                break
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        if st["state"] != "done":
            raise RuntimeError(f"batch job failed: {st}")
        t1 = time.perf_counter()
        res = c.post("/batch_result", json={"job_id": job["job_id"], "format": "csv"})
        download_s = time.perf_counter() - t1
    return {
        "skus": n,
        "weeks": weeks,
        "rows_in": n * weeks,
        "csv_bytes": len(raw),
        "horizon": horizon,
        "upload_s": round(upload_s, 2),
        "wall_s": round(wall, 2),
        "worker_s": st.get("seconds"),
        "skus_per_s": round(n / wall, 1),
        "progress_steps_seen": steps,
        "result_rows": res.text.count("\n") - 1,
        "download_s": round(download_s, 2),
    }


# ---------------------------------------------------------------- main


def _table(ours: list[dict], ceiling: list[dict]) -> str:
    lines = [
        "| clients | stockml req/s | p50 ms | p99 ms | echo req/s | echo p50 ms | echo p99 ms | fraction |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(ours, ceiling, strict=True):
        frac = a["rps"] / b["rps"] if b["rps"] else float("nan")
        lines.append(
            f"| {a['concurrency']} | {a['rps']} | {a['p50_ms']} | {a['p99_ms']} | {b['rps']} | {b['p50_ms']} | "
            f"{b['p99_ms']} | {frac:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="measure a running service (default: start one with a fresh router)")
    ap.add_argument("--key", default=os.environ.get("STOCKML_BENCH_KEY", KEY), help="bearer key for --url")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--batch-skus", type=int, default=10_000, help="0: skip the batch job")
    ap.add_argument("--skip-batch", action="store_true", help="no batch job (same as --batch-skus 0)")
    ap.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp", help="load generator's HTTP client")
    ap.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=(os.cpu_count() or 1) >= 2,
        help="pin the servers and the load generator to separate CPUs during the latency runs (see above)",
    )
    ap.add_argument("--batch-weeks", type=int, default=104)
    ap.add_argument("--horizon", type=int, default=13)
    ap.add_argument("--no-ceiling", action="store_true", help="do not start the echo service")
    ap.add_argument("--echo", choices=("sync", "async"), default="sync", help="the ceiling's API: sync or async")
    ap.add_argument("--skip-levels", action="store_true", help="no latency runs at --concurrency (nor the echo)")
    ap.add_argument("--load-seconds", type=float, default=0.0, help="a load run of this length (0: none)")
    ap.add_argument("--load-clients", type=int, default=64, help="concurrent clients of the load run")
    ap.add_argument("--load-fresh", type=float, default=0.1, help="share of load-run requests with a new history")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.skip_batch:
        args.batch_skus = 0
    server_cpus, client_cpus = cpu_split(args.pin)

    tmp = Path(tempfile.mkdtemp(prefix="stockml-serving-bench-"))
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "STOCKML_HOME": str(tmp / "home"),
        "STOCKML_AUTH__API_KEYS": f"{KEY}:user",
        "STOCKML_AUTH__RATE_LIMIT_PER_S": "1000000",
        "STOCKML_SERVING__POLL_S": "0",
    }
    for var in ISOLATE_VARS:
        env.pop(var, None)
    procs: list[subprocess.Popen] = []
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "bentoml": bentoml.__version__},
        "seconds_per_level": args.seconds,
        "payload": {"skus": 1, "weeks": 104, "horizon": args.horizon},
        "load": {
            "client": args.client,
            "server_cpus": sorted(server_cpus) if server_cpus and not args.url else None,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
        },
    }
    try:
        if args.url:
            url, key = args.url.rstrip("/"), args.key
        else:
            t0 = time.perf_counter()
            env["STOCKML_MLFLOW_TRACKING_URI"] = _register_router(tmp)
            result["router_setup_s"] = round(time.perf_counter() - t0, 1)
            proc, url = _serve(SERVICE, env, tmp / "stockml.log")
            procs.append(proc)
            wait_ready(url, proc, tmp / "stockml.log")
            key = KEY
        headers = {"Authorization": f"Bearer {key}"}
        payload = json.dumps({"items": [series("BENCH-1", 104, np.random.default_rng(3))], "horizon": args.horizon})
        body = payload.encode()
        if procs:
            pin_tree(procs[0].pid, server_cpus)
        ours = [] if args.skip_levels else _run_levels(url, headers, body, args, client_cpus)
        if args.load_seconds:
            result["load_run"] = _run_load(url, headers, args, client_cpus, procs[0].pid if procs else None)
        if procs:
            pin_tree(procs[0].pid, None)  # the batch job may use every CPU
        if ours:
            result["stockml"] = ours
        ceiling: list[dict] = []
        result["echo_api"] = args.echo
        if ours and not args.no_ceiling:
            target = "bench.serving:EchoAsync" if args.echo == "async" else "bench.serving:Echo"
            eproc, eurl = _serve(target, env, tmp / "echo.log")
            procs.append(eproc)
            wait_ready(eurl, eproc, tmp / "echo.log")
            pin_tree(eproc.pid, server_cpus)  # exactly as our service
            ceiling = _run_levels(eurl, {}, body, args, client_cpus)
            stop(eproc)
            procs.remove(eproc)
            result["echo"] = ceiling
            result["fraction_of_ceiling"] = {
                str(a["concurrency"]): round(a["rps"] / b["rps"], 3) if b["rps"] else None
                for a, b in zip(ours, ceiling, strict=True)
            }
        if args.batch_skus:
            result["batch"] = _batch(url, headers, args.batch_skus, args.batch_weeks, args.horizon)
    finally:
        for p in procs:
            stop(p)
    if ceiling:
        print(_table(ours, ceiling))
    elif ours:
        print(json.dumps(ours, indent=1))
    if "load_run" in result:
        print("load run:", json.dumps({k: v for k, v in result["load_run"].items() if k not in ("cached", "fresh")}))
    if "batch" in result:
        print("batch:", json.dumps(result["batch"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        print(f"written {args.out}")
    return result


if __name__ == "__main__":
    main()
