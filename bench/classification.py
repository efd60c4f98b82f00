"""Classification accuracy on the demo catalogue, against the generator's ground truth, and the router-feature time.

Why: README and ``bench/RESULTS.md`` quote how well the Syntetos–Boylan classes find the intermittent and
lumpy SKUs and how many of the injected anomalous products the isolation forest flags; the unit test
(``tests/unit/training/test_classification.py``) only checks thresholds, so the figures themselves come from here.
The same demand also times ``training.router.train.router_features`` (the router's series features), the
median of ``--repeats`` calls.

Example (the figures in bench/RESULTS.md)::

    python -m bench.classification --seeds 42,7,1 --out bench/results/classification_2026-12-01.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from training.classification.classify import classify
from training.data.demo import generate_catalogue
from training.data.validate import validate
from training.data.weekly import to_weekly_demand
from training.router.train import router_features

RESULTS = Path(__file__).resolve().parent / "results"
TODAY = pd.Timestamp("2026-11-23")  # the validation date the unit test uses (no future-dated rows)
SLOW = ("intermittent", "lumpy")


def score(classes: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float | int]:
    """Precision/recall of intermittent-or-lumpy detection and the anomaly flag rates, against the truth."""
    predicted = classes["pattern"].isin(SLOW)
    actual = truth["pattern"].reindex(classes.index).isin(SLOW)
    injected = truth["anomaly"].reindex(classes.index).notna()
    flagged = classes["is_anomaly"].astype(bool)
    hits = int((predicted & actual).sum())
    return {
        "skus": len(classes),
        "slow_precision": hits / int(predicted.sum()),
        "slow_recall": hits / int(actual.sum()),
        "injected_anomalies": int(injected.sum()),
        "injected_flagged_share": float((flagged & injected).sum() / injected.sum()),
        "normal_flagged_share": float((flagged & ~injected).sum() / (~injected).sum()),
    }


def run_seed(skus: int, weeks: int, seed: int, repeats: int) -> dict:
    cat = generate_catalogue(skus, weeks, seed)
    r = validate(cat.products, cat.movements, today=TODAY)
    demand = to_weekly_demand(r.movements)
    out: dict = {"seed": seed, **score(classify(demand, r.products), cat.truth_frame())}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        router_features(demand, 52)
        times.append(time.perf_counter() - t0)
    out["router_features_s_median"] = float(np.median(times))
    return out


def table(report: dict) -> str:
    """The Markdown table RESULTS.md quotes (a unit test checks that it quotes exactly this)."""
    lines = [
        "| seed | SKUs | intermittent/lumpy precision | recall | injected anomalous flagged | normal flagged "
        "| `router_features` s (median) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["seeds"]:
        lines.append(
            f"| {s['seed']} | {s['skus']} | {s['slow_precision']:.1%} | {s['slow_recall']:.1%} "
            f"| {s['injected_flagged_share']:.1%} of {s['injected_anomalies']} | {s['normal_flagged_share']:.1%} "
            f"| {s['router_features_s_median']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=1000)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--seeds", default="42,7,1")
    ap.add_argument("--repeats", type=int, default=5, help="router_features timings per seed (median kept)")
    ap.add_argument("--out", type=Path, default=RESULTS / f"classification_{dt.date.today().isoformat()}.json")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    report = {
        "benchmark": "bench.classification",
        "command": "python -m bench.classification " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "weeks": args.weeks,
        "seeds": [run_seed(args.skus, args.weeks, s, args.repeats) for s in seeds],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for s in report["seeds"]:
        print(
            f"seed {s['seed']}: {s['skus']} SKUs; intermittent/lumpy precision {s['slow_precision']:.1%}, recall "
            f"{s['slow_recall']:.1%}; injected anomalies flagged {s['injected_flagged_share']:.1%} of "
            f"{s['injected_anomalies']}, normal flagged {s['normal_flagged_share']:.1%}; router_features "
            f"{s['router_features_s_median']:.3f} s"
        )
    return report


if __name__ == "__main__":
    main()
