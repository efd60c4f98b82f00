"""The replenishment policies on the demo catalogue, lost-sales mode, per demand pattern.

Why: the published instances say how close the agent gets to the optimum on i.i.d. demand; this says
whether the one catalogue agent beats the per-product tuned classical policies on the platform's own
kind of data (seasonal, intermittent, lumpy demand, stock-outs, MOQs, lead times of 1-8 weeks).

The catalogue comes from ``training.data.demo.generate_catalogue`` (seeded), aggregated weekly with
``training.data.weekly.to_weekly_demand``; the generator's truth gives each SKU's pattern and its
stock-out weeks (censored sales, imputed before training). The last 52 weeks are held out and scored on
the uncensored demand the generator keeps in its truth (not the censored sales); the classical policies
are tuned per product on the weeks before, the agent trains on a seeded sample of ``--train-skus``
products (all of them by default) for ``--train-steps`` steps, its action centred on each SKU's tuned
base-stock level (``--anchor tuned``, as the pipeline does) or on the critical fractile, and every
policy is scored on the held-out weeks over ``--seeds`` seeds (rotations of the held-out year and
starting stocks, common to all policies). Costs: holding 25 % of unit cost a year, lost sales at the
margin. With ``--forecasts rolling`` (the pipeline's way) the agent's observation carries a forecast made
the week before every week, training and held-out weeks alike
(:func:`training.forecasting.rolling.rolling_forecasts`: the zoo's SES/CrostonSBA/TSB refitted at every
origin, the best by recent one-step error, a rolling conformal 80 % bound); ``none`` leaves the
observation's no-forecast values (mean demand, ``Z80 * cv`` width).

Example (the figures in bench/RESULTS.md)::

    python -m bench.rl_demo --skus 200 --train-steps 3000000 --out bench/results/rl_demo_200.json
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
from rl_agent.agent import AgentConfig
from rl_agent.catalogue import (
    CatalogueConfig,
    anchor_on_tuned,
    evaluate_policies,
    prepare_catalogue,
    train_catalogue_agent,
    tune_classical,
)
from training.data.demo import generate_catalogue
from training.data.weekly import to_weekly_demand
from training.forecasting.rolling import horizons_from_products, rolling_forecasts


def demo_frames(skus: int, weeks: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], pd.DataFrame]:
    """Weekly demand with the ``censored`` mask, the products table, each SKU's pattern and the uncensored
    demand of the held-out weeks (the generator's truth: what the policies are scored on)."""
    demo = generate_catalogue(skus, weeks, seed, dirty_rows=False)
    weekly = to_weekly_demand(demo.movements)
    censored = {(t.sku, demo.start + pd.Timedelta(weeks=w)) for t in demo.truth for w in t.stockout_weeks}
    weekly["censored"] = [(u, d) in censored for u, d in zip(weekly["unique_id"], weekly["ds"], strict=True)]
    return weekly, demo.products, {t.sku: t.pattern for t in demo.truth}, demo.holdout_frame()


def run(args: argparse.Namespace) -> dict[str, Any]:
    timings: dict[str, float] = {}
    began = time.perf_counter()
    weekly, products, patterns, held = demo_frames(args.skus, args.weeks, args.seed)
    config = CatalogueConfig(seed=args.seed)
    forecasts = None
    if args.forecasts == "rolling":
        started = time.perf_counter()
        horizons = horizons_from_products(products, config.review_period)
        forecasts = rolling_forecasts(weekly, horizons, n_jobs=args.n_jobs)
        timings["forecast_seconds"] = round(time.perf_counter() - started, 2)
    catalogue = prepare_catalogue(weekly, products, forecasts, patterns=patterns, holdout=held, config=config)
    timings["prepare_seconds"] = round(time.perf_counter() - began, 2)
    began = time.perf_counter()
    tuned = tune_classical(catalogue)
    timings["tune_seconds"] = round(time.perf_counter() - began, 2)
    if args.anchor == "tuned":
        anchor_on_tuned(catalogue, tuned)
    agent = None
    if args.train_steps > 0:
        config = AgentConfig(seed=args.seed, episode_length=args.episode_length, target_range=args.target_range)
        agent = train_catalogue_agent(catalogue, args.train_steps, args.train_skus, config)
        timings["train_seconds"] = agent.train_info["train_seconds"]
    began = time.perf_counter()
    evaluation = evaluate_policies(catalogue, tuned, agent, seeds=args.seeds)
    timings["evaluate_seconds"] = round(time.perf_counter() - began, 2)
    table = evaluation.per_pattern.round(4)
    return {
        "catalogue": {
            "skus": args.skus,
            "weeks": args.weeks,
            "seed": args.seed,
            "evaluated": len(catalogue.products),
            "skipped": len(catalogue.skipped),
            "mode": "lost_sales",
            "holdout_weeks": catalogue.config.holdout_weeks,
            "censored_weeks": int(weekly["censored"].sum()),
            "holdout_demand": "uncensored (the generator's truth)",
            "action_centre": args.anchor,
            "forecasts": args.forecasts,
        },
        "agent": None if agent is None else {**agent.train_info, "config": agent.config.__dict__},
        "seeds": args.seeds,
        "per_pattern": table.to_dict(orient="records"),
        "pattern_policy": evaluation.pattern_policy,
        "timings": timings,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python -m bench.rl_demo " + " ".join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The per-pattern table as bench/RESULTS.md shows it."""
    lines = [
        "| pattern | policy | products | mean total cost (52 wk) | 95 % CI | fill rate | cycle service | avg stock |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["per_pattern"]:
        lines.append(
            f"| {r['pattern']} | {r['policy']} | {r['products']} | {r['mean_total_cost']:.1f} | "
            f"[{r['ci95_lo']:.1f}, {r['ci95_hi']:.1f}] | {r['fill_rate']:.3f} | {r['cycle_service']:.3f} | "
            f"{r['average_stock']:.1f} |"
        )
    return "\n".join(lines)


SAME_OR_BETTER = ("smooth", "erratic")  # the agent at most the best classical mean + its half-width
WITHIN_5PCT = ("intermittent", "lumpy")  # the agent at most 5 % above the best classical mean


def targets_line(report: dict[str, Any]) -> str:
    """Issue 13's demo-catalogue targets read off the per-pattern table, one clause per pattern."""
    rows = report["per_pattern"]
    clauses = []
    for pattern in (*SAME_OR_BETTER, *WITHIN_5PCT):
        table = {r["policy"]: r for r in rows if r["pattern"] == pattern}
        if "rl" not in table:
            continue
        best = min((r for p, r in table.items() if p != "rl"), key=lambda r: r["mean_total_cost"])
        rl, cost = table["rl"]["mean_total_cost"], best["mean_total_cost"]
        if pattern in SAME_OR_BETTER:
            allowed = (best["ci95_hi"] - best["ci95_lo"]) / 2
            met, rule = rl <= cost + allowed, f"half-width {allowed:.1f}"
        else:
            met, rule = rl <= cost * 1.05, "5 %"
        verdict = "met" if met else "**not met**"
        clauses.append(
            f"{pattern} {verdict} (agent {rl:.1f} vs {best['policy']} {cost:.1f}, {100 * (rl / cost - 1):+.1f}%; "
            f"allowed: {rule})"
        )
    return "Against the targets: " + "; ".join(clauses) + "."


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=int, default=200)
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=3_000_000, help="PPO steps; 0 skips the agent")
    parser.add_argument("--train-skus", type=int, default=None, help="train on a sample of this many SKUs")
    parser.add_argument("--episode-length", type=int, default=104)
    parser.add_argument("--target-range", type=float, default=4.0, help="the agent's action spans [1/r, r] x centre")
    parser.add_argument(
        "--anchor",
        choices=("tuned", "fractile"),
        default="tuned",
        help="centre the agent's action on each SKU's tuned base-stock level (the pipeline's way) or on the "
        "critical fractile of its demand",
    )
    parser.add_argument(
        "--forecasts",
        choices=("rolling", "none"),
        default="rolling",
        help="the agent's observation with rolling-origin forecasts at every week (the pipeline's way) or none",
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="processes for the rolling forecasts")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.skus < 1 or args.weeks < 52 + 26 or args.seeds < 2:
        parser.error("need --skus >= 1, --weeks >= 78 and --seeds >= 2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    report = run(args)
    write_report(args.out, report)
    print(markdown_table(report))
    print(json.dumps({"pattern_policy": report["pattern_policy"], "timings": report["timings"]}))


if __name__ == "__main__":
    main()
