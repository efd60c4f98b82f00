"""Inference's cost in the number of SKUs for one fixed champion: the code's growth, apart from the models'.

Why: in ``bench.scale`` every catalogue size trains its own router, so the forecast step's exponent
mixes two things: how the code grows with the SKUs, and how the fitted models change with the catalogue
(a booster fitted on more SKUs has fuller trees to explain per SKU; a larger catalogue routes more SKUs
to dearer members). Here one home is trained once on ``--train-skus`` demo products (the pipeline up to
the champion: ingest, classify, zoo tuning, backtest, AutoML, router, promotion; no orders, no LSTM),
then the champion, loaded from the registry as the forecast step loads it, forecasts with intervals the
first N of those SKUs for each ``--skus`` N (a warm-up call first, so imports and compilation are not
counted). The exponent is the slope of log(seconds) on log(SKUs).

    python -m bench.scale_inference --train-skus 10000 --skus 1000,3000,10000 --out bench/results/scale_inference.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import loglog_exponent, write_report

# The members bench.scale chose for a 10,000-SKU catalogue (bench/results/scale.json, "backtested").
CHOSEN_FOR_10000 = ["SES", "Naive", "SeasonalNaive", "CrostonSBA", "TSB", "Naive2", "ADIDA", "CrostonOptimized",
                    "IMAPA", "Theta", "Damped", "Holt", "AutoETS"]  # fmt: skip


def train_home(skus: int, weeks: int, seed: int, methods: list[str]) -> tuple[Any, float]:
    """A fresh home (``STOCKML_HOME`` already set) trained up to the champion; (its Run, seconds)."""
    from stockml.connections import ensure_default_source, get_hook
    from stockml.pipeline import run_pipeline
    from stockml.run import Run
    from stockml.settings import get_settings
    from training.data.demo import generate_catalogue
    from training.data.store import write_source_tables

    settings = get_settings(methods=methods, lstm_register=False, orders=False)
    ensure_default_source(settings.source_conn_id, settings.default_source_db)
    cat = generate_catalogue(skus, weeks, seed, dirty_rows=False)
    write_source_tables(get_hook(settings.source_conn_id), cat.products, cat.movements, settings.source_schema)
    run = Run(settings, f"scale_inference_{skus}")
    began = time.perf_counter()
    run_pipeline(run)
    return run, time.perf_counter() - began


def time_forecasts(run: Any, sizes: list[int], horizon: int) -> list[dict[str, Any]]:
    """Seconds of the champion's forecast (with intervals) of the first N SKUs, for each N."""
    import mlflow

    from stockml.steps.ingest import load_demand
    from stockml.steps.registry import configure_mlflow
    from training.registry import mlflow_registry as reg

    configure_mlflow(run.settings)
    model = mlflow.pyfunc.load_model(f"models:/{reg.MODEL_NAME}@{reg.CHAMPION}")
    demand, _ = load_demand(run)
    ids = demand["unique_id"].drop_duplicates().to_numpy()
    model.predict(demand[demand["unique_id"].isin(ids[:50])], params={"horizon": horizon})  # warm-up
    rows = []
    for n in sizes:
        panel = demand[demand["unique_id"].isin(ids[:n])]
        began = time.perf_counter()
        fc = model.predict(panel, params={"horizon": horizon})
        seconds = time.perf_counter() - began
        rows.append({"skus": n, "forecast_s": round(seconds, 2), "rows": len(fc)})
        print(f"  {n} SKUs: {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def exponent(rows: list[dict[str, Any]]) -> float | None:
    if len({r["skus"] for r in rows}) < 2:
        return None
    return loglog_exponent([r["skus"] for r in rows], [r["forecast_s"] for r in rows])


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| SKUs forecast | seconds | ms per SKU |", "|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['skus']:,} | {r['forecast_s']:.1f} | {1000 * r['forecast_s'] / r['skus']:.2f} |")
    lines.append(f"| exponent | {report['exponent']} | |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-skus", type=int, default=10_000)
    p.add_argument("--skus", type=lambda t: [int(x) for x in t.split(",") if x], default=[1000, 3000, 10000])
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--horizon", type=int, default=13)
    p.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m], default=CHOSEN_FOR_10000,
                   help="members (default: the thirteen bench.scale chose for 10,000 SKUs)")  # fmt: skip
    p.add_argument("--automl-trials", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if max(args.skus) > args.train_skus or min(args.skus) < 1:
        p.error("every --skus must be between 1 and --train-skus")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="stockml-scale-inference-") as home:
        os.environ.update({"STOCKML_HOME": home, "STOCKML_HORIZON": str(args.horizon),
                           "STOCKML_AUTOML_TRIALS": str(args.automl_trials), "STOCKML_AUTOML_TIMEOUT_S": "60",
                           "STOCKML_BACKTEST_WINDOWS": "3"})  # fmt: skip
        run, train_s = train_home(args.train_skus, args.weeks, args.seed, args.methods)
        rows = time_forecasts(run, sorted(args.skus), args.horizon)
    report = {
        "train_skus": args.train_skus,
        "train_seconds": round(train_s, 1),
        "runs": rows,
        "exponent": exponent(rows),
        "settings": {
            "weeks": args.weeks,
            "seed": args.seed,
            "horizon": args.horizon,
            "methods": args.methods,
            "automl_trials": args.automl_trials,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "command": "python -m bench.scale_inference " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_report(args.out, report)
    print(markdown_table(report))


if __name__ == "__main__":
    main()
