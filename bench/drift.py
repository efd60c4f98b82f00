"""How often the drift check sees an injected shift, how often it cries wolf, and what one run costs.

Why: a drift detector's worth is its detection rate at the shifts that matter and its false-alarm
rate on ordinary data (seasons included); neither can be asserted, only measured over seeded runs.

Each run generates the demo catalogue (``training.data.demo.generate_catalogue``, a new seed per run,
156 weeks), takes the reference rows at ``--window`` weeks before the end (the champion's training
end) and the current rows at the end, and runs :func:`monitoring.drift.data_drift` on the catalogue
as it is (a false alarm when it says drifted) and with each shift injected from the week after the
reference end (``training.data.demo_shift.inject_shift``): the first monitoring run whose window
lies wholly after the shift. ``seconds`` times one monitoring run (features of both windows and the
Evidently report) on 1,000 and 10,000 products.

Example (the figures in bench/RESULTS.md)::

    python -m bench.drift --runs 20 --out bench/results/drift.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import write_report
from monitoring.drift import DEFAULT_DRIFT_SHARE, DEFAULT_THRESHOLD, data_drift, drift_features, reference_features
from training.data.demo import generate_catalogue
from training.data.demo_shift import inject_shift
from training.data.weekly import to_weekly_demand

SHIFTS = [("level", s, sh) for s in (0.3, 0.5, 1.0) for sh in (0.2, 0.5)] + [("season", 0.6, 0.2), ("season", 0.6, 0.5)]


def catalogue(skus: int, seed: int) -> pd.DataFrame:
    demo = generate_catalogue(skus, 156, seed, dirty_rows=False)
    return to_weekly_demand(demo.movements)[["unique_id", "ds", "y"]]


def judge(demand: pd.DataFrame, window: int, drift_share: float, threshold: float) -> tuple[bool, pd.DataFrame]:
    """The monitoring run's verdict and its current rows (the features of the last ``window`` weeks)."""
    end = demand["ds"].max()
    reference = reference_features(demand, end - pd.Timedelta(weeks=window), window)
    current = drift_features(demand, end, window)
    return data_drift(reference, current, drift_share, threshold).drifted, current


def effect_size(null: pd.DataFrame, shifted: pd.DataFrame) -> float:
    """How far the shift moved the current rows, in the null rows' spread: the largest over the features
    of |mean shift| / standard deviation (Cohen's d). Why: a two-sample test over ``n`` products on each
    side sees a shift at about ``d * sqrt(n / 2)`` standard errors, so this says how many products a
    shift of that kind needs before any test over products can see it."""
    return float(max(abs(shifted[c].mean() - null[c].mean()) / (null[c].std() or 1.0) for c in null.columns))


def run(args: argparse.Namespace) -> dict[str, Any]:
    alarms, hits = 0, {s: 0 for s in SHIFTS}
    effects: dict[tuple, list[float]] = {s: [] for s in SHIFTS}
    for r in range(args.runs):
        demand = catalogue(args.skus, 1000 + r)
        start = demand["ds"].max() - pd.Timedelta(weeks=args.window - 1)
        alarm, null = judge(demand, args.window, args.drift_share, args.threshold)
        alarms += alarm
        for shift in SHIFTS:
            kind, size, share = shift
            shifted, _ = inject_shift(demand, start, kind, size, share, seed=r)
            hit, current = judge(shifted, args.window, args.drift_share, args.threshold)
            hits[shift] += hit
            effects[shift].append(effect_size(null, current))
    seconds = {}
    for n in args.timing_skus:
        demand = catalogue(n, 7)
        began = time.perf_counter()
        judge(demand, args.window, args.drift_share, args.threshold)
        seconds[str(n)] = round(time.perf_counter() - began, 2)
    return {
        "false_alarm_rate": alarms / args.runs,
        "detection": [
            {
                "shift": k,
                "size": s,
                "share": sh,
                "detection_rate": hits[(k, s, sh)] / args.runs,
                "effect_size": round(sum(effects[(k, s, sh)]) / args.runs, 3),
            }
            for k, s, sh in SHIFTS
        ],
        "seconds": seconds,
        "settings": {
            "runs": args.runs,
            "skus": args.skus,
            "window_weeks": args.window,
            "drift_share": args.drift_share,
            "threshold": args.threshold,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python -m bench.drift " + " ".join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
    }


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| shift | size | share of products | detection rate | effect size d |", "|---|---|---|---|---|"]
    lines += [
        f"| {d['shift']} | {d['size']:g} | {d['share']:g} | {d['detection_rate']:.2f} | {d['effect_size']:.2f} |"
        for d in report["detection"]
    ]
    lines.append(f"| none (a new season included) | | | false alarms {report['false_alarm_rate']:.2f} | |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--window", type=int, default=13)
    parser.add_argument("--drift-share", type=float, default=DEFAULT_DRIFT_SHARE)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--timing-skus", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.window < 2:
        parser.error("need --runs >= 1 and --window >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    report = run(args)
    write_report(args.out, report)
    print(markdown_table(report))
    print(json.dumps(report["seconds"]))


if __name__ == "__main__":
    main()
