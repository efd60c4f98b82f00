"""Classification accuracy on the demo catalogue, against the generator's ground truth, and the router-feature time.

Also the clusters against the truth: the adjusted Rand index (ARI) of the yearly-shape clusters against the
planted season shapes (on the SKUs with a year of active life; on the smooth/erratic ones among them), the share
of non-seasonal SKUs put in the flat cluster, and how the K-means, HDBSCAN and Gaussian-mixture clusters line up
with the generating demand patterns (ARI; HDBSCAN's noise share).

Why: README and ``bench/RESULTS.md`` quote how well the Syntetos–Boylan classes find the intermittent and
lumpy SKUs and how many of the injected anomalous products the isolation forest flags; the unit test
(``tests/unit/training/test_classification.py``) only checks thresholds, so the figures themselves come from here.
The same demand also times ``training.router.train.router_features`` (the router's series features), the
median of ``--repeats`` calls.

Example (the figures in bench/RESULTS.md)::

    python -m bench.classification --seeds 42,7,1 --out bench/results/classification_2026-12-02_clusters.json
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
from sklearn.metrics import adjusted_rand_score

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


def cluster_score(classes: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float | int | list[str]]:
    """ARI of the clusters against the planted season shapes and the generating demand patterns."""
    t = truth.reindex(classes.index)
    year = classes["season_cluster"] >= 0  # a year or more of active life
    fast = year & t["pattern"].isin(["smooth", "erratic"])
    none = year & (t["season_shape"] == "none")
    hdb = classes["hdbscan_cluster"]
    fam = hdb >= 0
    return {
        "season_skus": int(year.sum()),
        "season_ari": float(adjusted_rand_score(t.loc[year, "season_shape"], classes.loc[year, "season_cluster"])),
        "season_fast_skus": int(fast.sum()),
        "season_fast_ari": float(adjusted_rand_score(t.loc[fast, "season_shape"], classes.loc[fast, "season_cluster"])),
        "none_flat_share": float((classes.loc[none, "season_cluster"] == 0).mean()),
        "season_profiles": sorted(set(classes.loc[classes["season_cluster"] > 0, "season_profile"])),
        "kmeans_k": int(classes["kmeans_cluster"].nunique()),
        "kmeans_pattern_ari": float(adjusted_rand_score(t["pattern"], classes["kmeans_cluster"])),
        "hdbscan_clusters": int(hdb[fam].nunique()),
        "hdbscan_noise_share": float((~fam).mean()),
        "hdbscan_pattern_ari": float(adjusted_rand_score(t.loc[fam, "pattern"], hdb[fam])),
        "gmm_components": int(classes["gmm_cluster"].nunique()),
        "gmm_pattern_ari": float(adjusted_rand_score(t["pattern"], classes["gmm_cluster"])),
    }


def run_seed(skus: int, weeks: int, seed: int, repeats: int) -> dict:
    cat = generate_catalogue(skus, weeks, seed)
    r = validate(cat.products, cat.movements, today=TODAY)
    demand = to_weekly_demand(r.movements)
    classes = classify(demand, r.products)
    truth = cat.truth_frame()
    out: dict = {"seed": seed, **score(classes, truth), **cluster_score(classes, truth)}
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


def cluster_table(report: dict) -> str:
    """The clusters' Markdown table RESULTS.md quotes (checked like :func:`table`)."""
    lines = [
        "| seed | season shapes ARI (SKUs with a year) | smooth/erratic among them | none → flat "
        "| seasonal clusters found | K-means k, ARI vs pattern | HDBSCAN clusters, noise, ARI (non-noise) "
        "| GMM components, ARI |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for s in report["seeds"]:
        lines.append(
            f"| {s['seed']} | {s['season_ari']:.3f} ({s['season_skus']}) | {s['season_fast_ari']:.3f} "
            f"({s['season_fast_skus']}) | {s['none_flat_share']:.1%} | {', '.join(s['season_profiles'])} "
            f"| {s['kmeans_k']}, {s['kmeans_pattern_ari']:.3f} | {s['hdbscan_clusters']}, "
            f"{s['hdbscan_noise_share']:.1%}, {s['hdbscan_pattern_ari']:.3f} "
            f"| {s['gmm_components']}, {s['gmm_pattern_ari']:.3f} |"
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
            f"{s['router_features_s_median']:.3f} s; season shapes ARI {s['season_ari']:.3f} "
            f"(smooth/erratic {s['season_fast_ari']:.3f})"
        )
    return report


if __name__ == "__main__":
    main()
