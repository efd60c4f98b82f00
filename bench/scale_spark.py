"""Wall time of the zoo's local (statsforecast) members on Spark: a 3-window backtest and a forecast of N SKUs.

Why: the Spark engine (``STOCKML_ENGINE=spark``, ``training.distributed.spark_engine``) is there for
catalogues too large for one process; what it costs per SKU on a given master, and what the engine
adds over the pandas path on the same cores, can only be measured.

For each ``--skus`` N: the demo catalogue (``training.data.demo.generate_catalogue``, seed 42, ``--weeks``
weeks) is aggregated to weekly demand (pandas, not timed; SKUs too short for the windows are left out, as
``backtest`` leaves them out, and ``skus_per_s`` counts the catalogue's N), loaded into Spark and cached (``load_s``),
then ``SparkZoo.cross_validation`` (h = ``--horizon``, ``--windows`` windows) and ``SparkZoo.forecast``
(with 80/95 % intervals) each run to the end through Spark's ``noop`` sink, so every forecast is computed
and nothing is collected. ``--pandas`` also times ``ModelZoo`` (statsforecast's own worker pool,
``n_jobs=-1``) on the same frame, as the baseline on the same cores.

The default members are the zoo's fast local ones; AutoARIMA, AutoETS and AutoTheta cost 10-100x more
per SKU (bench/RESULTS.md, the member table) and can be added with ``--methods``.

    python -m bench.scale_spark --skus 3000,30000 --weeks 156 --out bench/results/scale_spark.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import loglog_exponent, write_report
from training.data.demo import generate_catalogue
from training.data.weekly import to_weekly_demand
from training.forecasting.backtest import MIN_TRAIN_WEEKS

FAST_LOCAL = ["Naive", "Naive2", "SeasonalNaive", "SES", "Holt", "Damped", "Theta", "CrostonSBA", "TSB", "ADIDA"]


def demand_of(skus: int, weeks: int, horizon: int, windows: int) -> pd.DataFrame:
    """The catalogue's weekly demand, without the SKUs too short for the windows (as ``backtest`` leaves them out)."""
    demand = to_weekly_demand(generate_catalogue(skus, weeks, seed=42, dirty_rows=False).movements)
    lengths = demand.groupby("unique_id")["y"].transform("size")
    return demand[lengths >= horizon * windows + MIN_TRAIN_WEEKS].reset_index(drop=True)


def timed_spark(spark: Any, demand: pd.DataFrame, args: argparse.Namespace) -> dict[str, float]:
    """Seconds to load, backtest and forecast ``demand`` through a SparkZoo (each job run to its end)."""
    from training.distributed.frames import demand_frame
    from training.distributed.spark_engine import SparkZoo

    out: dict[str, float] = {}
    began = time.perf_counter()
    sdf = demand_frame(spark, demand).repartition(args.partitions, "unique_id").cache()
    sdf.count()
    out["load_s"] = time.perf_counter() - began
    zoo = SparkZoo(args.methods, spark=spark, partitions=args.partitions)
    for name, job in (
        ("backtest_s", lambda: zoo.cross_validation(sdf, args.horizon, args.windows)),
        ("forecast_s", lambda: zoo.forecast(sdf, args.horizon)),
    ):
        began = time.perf_counter()
        job().write.format("noop").mode("overwrite").save()
        out[name] = time.perf_counter() - began
    sdf.unpersist()
    return out


def timed_pandas(demand: pd.DataFrame, args: argparse.Namespace) -> dict[str, float]:
    from training.forecasting.zoo import ModelZoo

    zoo = ModelZoo(args.methods, n_jobs=-1)
    out = {}
    for name, job in (
        ("pandas_backtest_s", lambda: zoo.cross_validation(demand, args.horizon, args.windows)),
        ("pandas_forecast_s", lambda: zoo.forecast(demand, args.horizon)),
    ):
        began = time.perf_counter()
        job()
        out[name] = time.perf_counter() - began
    return out


def java_version() -> str:
    proc = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return (proc.stderr or proc.stdout).splitlines()[0] if (proc.stderr or proc.stdout) else "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from training.distributed.session import spark_job

    rows = []
    with spark_job(args.master, args.partitions, app_name="stockml-bench") as spark:
        for n in args.skus:
            demand = demand_of(n, args.weeks, args.horizon, args.windows)
            row: dict[str, Any] = {"skus": n, "weeks": args.weeks, "backtested_skus": demand["unique_id"].nunique()}
            row["demand_rows"] = len(demand)
            row.update(timed_spark(spark, demand, args))
            row["total_s"] = row["backtest_s"] + row["forecast_s"]
            row["skus_per_s"] = n / row["total_s"]
            if args.pandas:
                row.update(timed_pandas(demand, args))
                row["pandas_total_s"] = row["pandas_backtest_s"] + row["pandas_forecast_s"]
            rows.append({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
            print(rows[-1], flush=True)
    return {
        "runs": rows,
        "exponents": exponents(rows),
        "settings": {
            "methods": args.methods,
            "horizon": args.horizon,
            "windows": args.windows,
            "master": args.master,
            "partitions": args.partitions,
        },
        "versions": {lib: version(lib) for lib in ("pyspark", "statsforecast", "fugue", "pandas")}
        | {"java": java_version()},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python -m bench.scale_spark " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def exponents(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The slope of log(seconds) on log(SKUs) of the backtest, the forecast and both (1: linear); none
    from a single size."""
    if len({r["skus"] for r in rows}) < 2:
        return {}
    skus = [r["skus"] for r in rows]
    return {k: loglog_exponent(skus, [r[k] for r in rows]) for k in ("backtest_s", "forecast_s", "total_s")}


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| SKUs | backtest s | forecast s | total s | SKUs/s |", "|---|---|---|---|---|"]
    for r in report["runs"]:
        seconds = " | ".join(f"{r[k]:.1f}" for k in ("backtest_s", "forecast_s", "total_s", "skus_per_s"))
        lines.append(f"| {r['skus']:,} | {seconds} |")
    if report.get("exponents"):
        e = report["exponents"]
        lines.append(f"| exponent | {e['backtest_s']:.2f} | {e['forecast_s']:.2f} | {e['total_s']:.2f} | |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=lambda s: [int(x) for x in s.split(",")], default=[3000])
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--horizon", type=int, default=13)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--methods", type=lambda s: s.split(","), default=FAST_LOCAL)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=8, help="partitions holding the series")
    parser.add_argument("--pandas", action="store_true", help="also time the pandas path on the same data")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    report = run(args)
    write_report(args.out, report)
    print(markdown_table(report))


if __name__ == "__main__":
    main()
