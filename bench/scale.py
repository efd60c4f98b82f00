"""The training pipeline's and inference's cost as the catalogue grows: seconds and peak memory per stage.

Why: a catalogue of 10,000 products must retrain within a night on one machine and forecast within a
minute, and the next customer's 100,000 need an estimate of how many workers; only measured curves
answer either. Each catalogue size runs in a fresh process (its memory figures are its own) on a fresh
home (SQLite source, SQLite MLflow store): the demo catalogue is written to the source, then
:func:`stockml.pipeline.run_pipeline` runs end to end (ingest: load and validate; classify; zoo tuning;
backtest; AutoML; router fit, registration and promotion; the champion's forecast written back; the
LSTM as the deep member; the RL agent trained on a sample of products; the order recommendations
written back), each stage timed and its peak resident memory (the process and its worker processes,
sampled every second) recorded through the pipeline's ``stages`` hook. Inference alone is the champion's
forecast (loaded from the registry, with intervals) plus the order recommendations.

Which members a large catalogue backtests is chosen by measured cost: ``--probe-skus`` products are
backtested member by member first, and the most expensive members are left out until a catalogue of
``--choose-for`` products (10,000) is predicted to backtest within ``--backtest-budget-s`` (300 s)
(the JSON lists every member's cost per SKU and the choice). The exponent of each stage is the slope
of log(seconds) on log(SKUs).

Example (the figures in bench/RESULTS.md; add 10000 to ``--skus`` for the 10,000-SKU point)::

    python -m bench.scale --skus 1000,3000 --weeks 156 --probe-skus 200 --out bench/results/scale.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import loglog_exponent, write_report

INFERENCE_STAGES = ("forecast", "orders: recommend")
# Stages whose work splits by SKU (partitions of whole series on Spark executors or Celery workers); the
# rest fit one model on the whole catalogue (AutoML, the router, the LSTM, the RL agent on its sample) and
# run on one training worker.
SPLIT_BY_SKU = (
    "ingest", "classify", "backtest", "forecast", "orders: rolling forecasts",
    "orders: tune classical", "orders: evaluate policies", "orders: recommend",
)  # fmt: skip
TARGETS = {"inference_10000_s": 60.0, "training_10000_s": 20 * 60.0}


class StageMeter:
    """The pipeline's ``stages`` hook: wall seconds and peak RSS (this process and its children) per stage.

    Sampled once a second: listing the children reads every entry of /proc, and at 0.1 s py-spy saw the
    sampler thread in a third of the samples, holding the GIL the measured code needs."""

    def __init__(self, interval_s: float = 1.0) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self.stages: list[dict[str, Any]] = []

    def _rss(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except Exception:  # a worker that ended between listing and reading
                continue
        return total

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start_rss, peak = self._rss(), [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(self._interval):
                peak[0] = max(peak[0], self._rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - began
            stop.set()
            thread.join()
            peak[0] = max(peak[0], self._rss(), start_rss)
            mb = round(peak[0] / 2**20, 1)
            start = round(start_rss / 2**20, 1)
            self.stages.append({"stage": name, "seconds": round(seconds, 2), "peak_rss_mb": mb, "start_rss_mb": start})
            print(f"  stage {name}: {seconds:.1f} s, peak {mb:.0f} MB", file=sys.stderr, flush=True)


def member_costs(skus: int, weeks: int, seed: int, horizon: int, windows: int) -> dict[str, float]:
    """Marginal seconds per SKU of each default member's backtest (``windows`` origins, ``horizon`` weeks):
    the slope between a demo sample of ``skus`` products and one of a quarter as many, one member at a
    time. Why a slope: a member's fixed cost (worker processes starting, a global model's set-up) is paid
    once per run, not per SKU, and would make a cheap member look dear on a small sample."""
    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting.backtest import backtest
    from training.forecasting.zoo import ModelZoo

    demand = to_weekly_demand(generate_catalogue(skus, weeks, seed, dirty_rows=False).movements)
    small_ids = demand["unique_id"].drop_duplicates().iloc[: max(skus // 4, 10)]
    small = demand[demand["unique_id"].isin(small_ids)]
    n_small = small["unique_id"].nunique()
    costs = {}
    for method in ModelZoo().methods:
        seconds = []
        for panel in (small, demand):
            began = time.perf_counter()
            backtest(panel, ModelZoo(methods=[method], n_jobs=-1), horizon, windows)
            seconds.append(time.perf_counter() - began)
        costs[method] = max((seconds[1] - seconds[0]) / (skus - n_small), 0.0)
        print(f"  {method}: {costs[method] * 1000:.2f} ms/SKU ({seconds[0]:.1f} s on {n_small}, "
              f"{seconds[1]:.1f} s on {skus})", file=sys.stderr, flush=True)  # fmt: skip
    return costs


def choose_members(costs: dict[str, float], largest: int, budget_s: float) -> tuple[list[str], list[str]]:
    """Leave out the most expensive members until ``largest`` SKUs' backtest is predicted within
    ``budget_s``; (kept, left out). At least the two cheapest stay (a router needs a choice)."""
    kept = sorted(costs, key=costs.get)
    dropped: list[str] = []
    while len(kept) > 2 and sum(costs[m] for m in kept) * largest > budget_s:
        dropped.append(kept.pop())
    return kept, dropped


def one_size(skus: int, weeks: int, seed: int, methods: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The pipeline on ``skus`` demo products in this process (called in a fresh child by :func:`run`)."""
    os.environ.update(env)
    from stockml.connections import ensure_default_source, get_hook
    from stockml.pipeline import run_pipeline
    from stockml.run import Run
    from stockml.settings import get_settings
    from training.data.demo import generate_catalogue
    from training.data.store import write_source_tables

    settings = get_settings(methods=methods, lstm_register=True)
    ensure_default_source(settings.source_conn_id, settings.default_source_db)
    began = time.perf_counter()
    cat = generate_catalogue(skus, weeks, seed, dirty_rows=False)
    write_source_tables(get_hook(settings.source_conn_id), cat.products, cat.movements, settings.source_schema)
    demo_seconds = time.perf_counter() - began
    meter = StageMeter()
    began = time.perf_counter()
    summary = run_pipeline(Run(settings, f"scale_{skus}"), stages=meter)
    total = time.perf_counter() - began
    inference = sum(s["seconds"] for s in meter.stages if s["stage"] in INFERENCE_STAGES)
    return {
        "skus": skus,
        "weeks": weeks,
        "demo_data_seconds": round(demo_seconds, 2),
        "training_seconds": round(total, 2),
        "inference_seconds": round(inference, 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in meter.stages),
        "stages": meter.stages,
        "forecast_rows": len(summary.forecasts),
        "router": (summary.router or {}).get("mode"),
    }


def exponents(sizes: list[dict[str, Any]]) -> dict[str, float]:
    """The slope of log(seconds) on log(SKUs) per stage (1: linear), and for training and inference."""
    if len(sizes) < 2:
        return {}
    skus = [s["skus"] for s in sizes]
    series: dict[str, list[float]] = {"training": [s["training_seconds"] for s in sizes],
                                      "inference": [s["inference_seconds"] for s in sizes]}  # fmt: skip
    for name in [st["stage"] for st in sizes[0]["stages"]]:
        values = [next((st["seconds"] for st in s["stages"] if st["stage"] == name), np.nan) for s in sizes]
        series[name] = values
    out = {}
    for name, values in series.items():
        y = np.asarray(values, float)
        if np.all(np.isfinite(y)) and np.all(y > 0):
            out[name] = loglog_exponent(skus, y)
    return out


def workers_needed(sizes: list[dict[str, Any]], exps: dict[str, float], skus: int, night_h: float) -> dict[str, Any]:
    """How many workers like this machine retrain ``skus`` products within a night of ``night_h`` hours.

    Each stage is extrapolated from the largest measured catalogue with its fitted exponent; for the
    stages of :data:`SPLIT_BY_SKU` never below 1 (work per SKU: a curve that looked sublinear on small
    catalogues was paying a fixed cost that the extrapolation should not divide away), for the others as
    fitted (zoo tuning, the LSTM's fixed steps and the RL agent's sample do not grow with the catalogue).
    The split stages spread over the workers, the others run on one of them:
    ``serial + split / workers <= night``."""
    largest = max(sizes, key=lambda s: s["skus"])
    ratio = skus / largest["skus"]
    split = serial = 0.0
    per_stage = {}
    for st in largest["stages"]:
        by_sku = st["stage"] in SPLIT_BY_SKU
        exponent = exps.get(st["stage"], 1.0)
        seconds = st["seconds"] * ratio ** (max(exponent, 1.0) if by_sku else max(exponent, 0.0))
        per_stage[st["stage"]] = round(seconds, 1)
        if by_sku:
            split += seconds
        else:
            serial += seconds
    night = night_h * 3600.0
    workers = None if serial >= night else max(1, int(np.ceil(split / (night - serial))))
    return {
        "skus": skus,
        "night_hours": night_h,
        "from_skus": largest["skus"],
        "stage_seconds_one_worker": per_stage,
        "split_by_sku_seconds": round(split, 1),
        "one_worker_seconds": round(serial, 1),
        "workers": workers,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(args.skus)
    if args.methods:
        costs, kept, dropped = {}, args.methods, []
    else:
        print(f"member costs on {args.probe_skus} SKUs...", flush=True)
        costs = member_costs(args.probe_skus, args.weeks, args.seed, args.horizon, args.windows)
        kept, dropped = choose_members(costs, max(args.choose_for, sizes[-1]), args.backtest_budget_s)
    env = {
        "STOCKML_AUTOML_TRIALS": str(args.automl_trials),
        "STOCKML_AUTOML_TIMEOUT_S": str(args.automl_timeout_s),
        "STOCKML_RL_TRAIN_STEPS": str(args.rl_train_steps),
        "STOCKML_RL_SAMPLE_SKUS": str(args.rl_sample_skus),
        "STOCKML_HORIZON": str(args.horizon),
        "STOCKML_BACKTEST_WINDOWS": str(args.windows),
    }
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix=f"stockml-scale-{n}-") as home:
            child_env = {**env, "STOCKML_HOME": home}  # the embedded SQLite source and MLflow store
            out = Path(home) / "size.json"
            print(f"{n} SKUs x {args.weeks} weeks ({', '.join(kept)})...", flush=True)
            cmd = [sys.executable, "-m", "bench.scale", "--one", str(n), "--weeks", str(args.weeks),
                   "--seed", str(args.seed), "--methods", ",".join(kept), "--child-env", json.dumps(child_env),
                   "--out", str(out)]  # fmt: skip
            subprocess.run(cmd, check=True)
            size = json.loads(out.read_text())
            results.append(size)
            print(f"  training {size['training_seconds']:.0f} s, inference {size['inference_seconds']:.1f} s, "
                  f"peak {size['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    largest = next((s for s in results if s["skus"] == 10000), None)
    met = {} if largest is None else {
        "inference_10000_met": largest["inference_seconds"] < TARGETS["inference_10000_s"],
        "training_10000_met": largest["training_seconds"] < TARGETS["training_10000_s"],
    }  # fmt: skip
    knobs = ("weeks", "seed", "horizon", "windows", "automl_trials", "automl_timeout_s", "rl_train_steps",
             "rl_sample_skus")  # fmt: skip
    exps = exponents(results)
    return {
        "sizes": results,
        "exponents": exps,
        "extrapolated": workers_needed(results, exps, args.extrapolate_skus, args.night_hours),
        "members": {
            "cost_s_per_sku": {m: round(c, 5) for m, c in sorted(costs.items(), key=lambda kv: kv[1])},
            "probe_skus": args.probe_skus if costs else None,
            "backtested": kept,
            "left_out": dropped,
            "backtest_budget_s": args.backtest_budget_s,
            "chosen_for_skus": max(args.choose_for, sizes[-1]),
        },
        "targets": {**TARGETS, **met},
        "settings": {k: getattr(args, k) for k in knobs},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
    }


def markdown_table(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    names = [st["stage"] for st in sizes[0]["stages"]]
    head = "| stage | " + " | ".join(f"{s['skus']:,} SKUs s (peak MB)" for s in sizes) + " | exponent |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    exps = report["exponents"]
    for name in names:
        cells = []
        for s in sizes:
            st = next((x for x in s["stages"] if x["stage"] == name), None)
            cells.append("" if st is None else f"{st['seconds']:.1f} ({st['peak_rss_mb']:.0f})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {exps.get(name, '')} |")
    for key in ("training", "inference"):
        cells = [f"**{s[key + '_seconds']:.1f}**" for s in sizes]
        lines.append(f"| **{key}** | " + " | ".join(cells) + f" | {exps.get(key, '')} |")
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skus", type=_sizes, default=[1000, 3000, 10000], help="comma-separated catalogue sizes")
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--windows", type=int, default=3, help="backtest windows")
    p.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m], default=None,
                   help="members to backtest (default: chosen by measured cost, see --backtest-budget-s)")  # fmt: skip
    p.add_argument("--probe-skus", type=int, default=400)
    p.add_argument("--backtest-budget-s", type=float, default=300.0,
                   help="the backtest budget of the --choose-for catalogue that chooses the members")  # fmt: skip
    p.add_argument("--choose-for", type=int, default=10_000,
                   help="the catalogue size the members are chosen for (every size runs the same members)")  # fmt: skip
    p.add_argument("--automl-trials", type=int, default=10)
    p.add_argument("--automl-timeout-s", type=float, default=60.0)
    p.add_argument("--rl-train-steps", type=int, default=100_000)
    p.add_argument("--rl-sample-skus", type=int, default=200)
    p.add_argument("--extrapolate-skus", type=int, default=100_000, help="catalogue of the worker arithmetic")
    p.add_argument("--night-hours", type=float, default=8.0, help="the nightly window retraining must fit in")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child: one size
    p.add_argument("--child-env", type=json.loads, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.skus or min(args.skus) < 20 or args.weeks < 60:
        p.error("need --skus of at least 20 products each and --weeks >= 60 (a season and a holdout)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.one is not None:
        write_report(args.out, one_size(args.one, args.weeks, args.seed, args.methods, args.child_env or {}))
        return
    report = run(args)
    write_report(args.out, report)
    print(markdown_table(report))
    print(json.dumps({"exponents": report["exponents"], "targets": report["targets"],
                      "extrapolated": report["extrapolated"]}))  # fmt: skip


if __name__ == "__main__":
    main()
