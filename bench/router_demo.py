"""Router benchmark on demo data: accuracy targets and the AutoML wall time, on this machine.

What it measures (issue 3 targets):

- the router's OWA against the best single method's, on the holdout window (the last
  backtest window; the router is fitted on the earlier ones, the best single method is the
  one that was best on the earlier ones, as a planner would have chosen it);
- the share of SKUs where the router's error is within 10 % of that SKU's best method;
- the wall time of the whole training: ingest → classify → TSB tuning → backtest of the
  15-method zoo → Optuna AutoML → router training, evaluation, MLflow logging and registration.

The router is trained on the configured metric (``--metric``, default mase); the figures for
the other metric are printed too, from the same backtest, so both trade-offs are visible.

Example::

    python -m bench.router_demo --skus 1000 --trials 30 --timeout 240 --out /tmp/router_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from stockml.settings import Settings


def table(result: dict) -> str:
    """The Markdown table RESULTS.md quotes (a unit test checks that it quotes exactly this)."""
    t, a = result["targets"], result["automl"]
    best = result["best_single"]
    shares = ", ".join(f"{m} {v:.1%}" for m, v in list(result.get("best_method_share", {}).items())[:4])
    rows = [
        ("router holdout MASE / OWA", f"{t['router_mase']:.3f} / {t['router_owa']:.3f} ({result['mode']} mode)"),
        (f"best single method ({best}, chosen on the earlier windows) MASE / OWA",
         f"{t['best_single_mase']:.3f} / {t['best_single_owa']:.3f}"),
        ("oracle (each SKU's best method in hindsight) MASE", f"{t['oracle_mase']:.3f}"),
        ("SKUs within 10 % of their best method: holdout window / all windows",
         f"{t['share_within_10pct_of_best']:.1%} / {t['share_within_10pct_of_best_all_windows']:.1%}"),
        ("AutoML: CV objective with the defaults → tuned",
         f"{a['baseline_value']:.4f} → {a['best_value']:.4f} ({a['n_trials']} trials, {a['n_pruned']} pruned)"),
        ("share of SKUs each method is best for (backtest windows, top 4)", shares),
        ("wall time, data to registered model", f"{result['total_training_s']:.0f} s"),
    ]  # fmt: skip
    return "\n".join(["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=1000)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--trials", type=int, default=30, help="Optuna trials (time-boxed by --timeout)")
    ap.add_argument("--timeout", type=float, default=240, help="AutoML time box, seconds")
    ap.add_argument("--metric", choices=["mase", "owa"], default="mase")
    ap.add_argument("--home", type=Path, default=None, help="state folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    home = args.home or Path(tempfile.mkdtemp(prefix="stockml-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_CONN_STOCKML_BENCH"] = sqlite_conn_json(HomeLayout(home).source_db)

    from stockml.run import Run
    from stockml.steps import backtest as bt_step
    from stockml.steps import classify, ingest, router, tuning
    from training.data.demo import generate_catalogue
    from training.data.store import write_source_tables
    from training.router.train import train_router

    s = Settings(
        home=home, source_conn_id="stockml_bench", automl_trials=args.trials, automl_timeout_s=args.timeout,
        router_metric=args.metric,
    )  # fmt: skip
    cat = generate_catalogue(args.skus, args.weeks, args.seed)
    run = Run(s, "bench")
    write_source_tables(run.engine(), cat.products, cat.movements)

    timings: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 1)
        print(f"  {name:<11} {timings[name]:7.1f} s", flush=True)

    print(f"router benchmark: {args.skus} SKUs x {args.weeks} weeks, seed {args.seed}, home {home}")
    ingest.ingest(run)
    lap("ingest")
    classify.classify_step(run)
    lap("classify")
    tuning.tune_zoo_step(run)
    lap("zoo tuning")
    bt_step.backtest_step(run)
    lap("backtest")
    tuning.automl_step(run)
    lap("automl")
    version = router.train_router_step(run)
    lap("router")
    total = round(sum(timings.values()), 1)
    routed = run.load_json(run.layout.router)
    automl = run.load_json(run.layout.automl)

    other = "owa" if args.metric == "mase" else "mase"
    demand, _ = ingest.load_demand(run)
    backtest = bt_step.load_backtest(run)
    alt = train_router(demand, backtest, s.season_length, None, automl.get("best_params"), metric=other)
    # Which method is each SKU's best over the backtest windows (lowest mean MASE): the share per method.
    best_share = backtest.best_method_per_sku().value_counts(normalize=True).round(4).to_dict()

    result = {
        "command": "python -m bench.router_demo " + shlex.join(sys.argv[1:] if argv is None else argv),
        "skus": args.skus,
        "weeks": args.weeks,
        "seed": args.seed,
        "metric": args.metric,
        "timings_s": timings,
        "total_training_s": total,
        "automl": {k: automl.get(k) for k in ("n_trials", "n_pruned", "best_value", "baseline_value", "elapsed_s")},
        "mode": routed["mode"],
        "mode_scores": routed["mode_scores"],
        "best_single": routed["best_single"],
        "targets": routed["targets"],
        "best_method_share": best_share,
        "registered": f"{version.name} v{version.version}",
        "other_metric": {"metric": other, "mode": alt.policy.mode, "targets": alt.targets},
        "summary": routed["summary"],
        "report": str(run.layout.router_report.html),
    }
    t = routed["targets"]
    print(json.dumps(result, indent=2, default=str))
    print(
        f"\nrouter ({args.metric}, {routed['mode']}): OWA {t['router_owa']:.3f} vs best single "
        f"{routed['best_single']} {t['best_single_owa']:.3f}; MASE {t['router_mase']:.3f} vs "
        f"{t['best_single_mase']:.3f} (oracle {t['oracle_mase']:.3f}); within 10 % of best on "
        f"{t['share_within_10pct_of_best']:.1%} of SKUs on the holdout window, "
        f"{t.get('share_within_10pct_of_best_all_windows', float('nan')):.1%} averaged over all windows "
        f"(out of fold); training {total:.0f} s"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
