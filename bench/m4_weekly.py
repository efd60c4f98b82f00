"""M4 Weekly benchmark: every method of the model zoo on the 359 weekly series of M4.

Why this exists: the zoo claims M4-compatible benchmarks (Naive2, SES, Holt, Damped, Theta)
and M4-exact metrics. Running the zoo on the M4 Weekly data and putting our figures beside
the published ones is the cheapest way to catch a silent divergence (a different seasonal
protocol, a wrong MASE scale, a broken OWA baseline) before it leaks into the stock figures.

Protocol, as M4 did it for weekly data:

- horizon h = 13 weeks;
- frequency 1: M4 treated weekly series as non-seasonal, so the seasonality test never
  fires, Naive2 equals plain Naive and the MASE scale is the lag-1 in-sample naive error;
- time index ``ds`` = 1..n with ``freq=1`` (M4 ships no dates, and none are needed);
- no clipping of negative forecasts (the stock pipeline clips; M4 did not).

Two modes:

- ``--test PATH`` (official): train on the full training series, score on the M4 test file.
  Only this mode is comparable with the published figures, and it checks the acceptance
  criteria (Naive2 reproduces 9.161 / 2.777; SES and Theta within 2 %).
- holdout (default): the last 13 values of each training series are held out. The figures
  rank the methods but are *not* comparable in absolute terms with the published ones,
  because they are measured on different (earlier) weeks.
- ``--validation``: the holdout moved 13 weeks back (the last 13 values of each training series
  are dropped, the 13 before them held out), so settings can be tuned without ever looking at
  the holdout weeks; run the holdout once with the settings chosen here.

Example::

    python -m bench.m4_weekly --train ../shared/data/m4/Weekly-train.csv --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.forecasting.methods import default_methods, resolve_methods
from training.forecasting.metrics import insample_scales, pointwise_errors, summarise
from training.forecasting.zoo import ModelZoo

H = 13
SEASON_LENGTH = 1  # M4 used frequency 1 for weekly data
BASELINE = "Naive2"
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "m4"
DEFAULT_TRAIN = DATA_DIR / "Weekly-train.csv"
DEFAULT_PUBLISHED = DATA_DIR / "m4_weekly_results.csv"

# Our method name → the names the published results file may use for the same benchmark.
PUBLISHED_NAMES: dict[str, tuple[str, ...]] = {
    "Naive": ("Naive1", "Naive"),
    "Naive2": ("Naive2",),
    "SeasonalNaive": ("sNaive",),
    "SES": ("SES",),
    "Holt": ("Holt",),
    "Damped": ("Damped",),
    "Theta": ("Theta",),
}
# Official-test acceptance: Naive2 must reproduce the published figures to their printed
# precision (3 decimals); SES and Theta are re-implementations, so 2 % relative tolerance.
ACCEPTANCE: dict[str, float | None] = {"Naive2": None, "SES": 0.02, "Theta": 0.02}
ROUNDING_TOL = 0.0005 + 1e-9

HOLDOUT_NOTE = (
    "Holdout mode: scored on the last 13 weeks of Weekly-train.csv, not on the M4 test set. "
    "These figures rank the methods but are NOT comparable in absolute terms with the "
    "published (test-set) figures shown beside them; pass --test to reproduce those."
)
VALIDATION_NOTE = (
    "Validation mode: the last 13 weeks of Weekly-train.csv are dropped and the 13 before them "
    "scored, for tuning without touching the holdout; not comparable with the published figures."
)
NOTES = {"holdout": HOLDOUT_NOTE, "validation": VALIDATION_NOTE}


# --------------------------------------------------------------------------- data


def load_m4(path: str | Path, n_series: int | None = None) -> pd.DataFrame:
    """Read an M4 file (one row per series: id, then values NaN-padded at the end) as a long frame.

    Returns ``unique_id`` (str), ``ds`` (int, 1..n per series) and ``y`` (float), in file
    order. ``n_series`` keeps only the first N rows, for quick runs.
    """
    wide = pd.read_csv(path, nrows=n_series)
    ids = wide.iloc[:, 0].astype(str).to_numpy()
    values = wide.iloc[:, 1:].to_numpy(dtype=float)
    frames = []
    for uid, row in zip(ids, values, strict=True):
        y = row[~np.isnan(row)]
        # M4 pads only at the end; an interior gap would silently shift the time index.
        if len(y) and np.isnan(row[: len(y)]).any():
            raise ValueError(f"series {uid} has interior missing values")
        ds = np.arange(1, len(y) + 1, dtype=np.int64)
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def holdout_split(long: pd.DataFrame, h: int = H) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each series into (all but the last ``h`` values, the last ``h`` values).

    The test part keeps its original ``ds`` so that it lines up with the forecasts.
    """
    d = long.sort_values(["unique_id", "ds"], kind="stable")
    from_end = d.groupby("unique_id", sort=False).cumcount(ascending=False)
    short = d.groupby("unique_id")["y"].size()
    if (short <= h + 1).any():
        raise ValueError(f"series too short for a {h}-step holdout: {list(short[short <= h + 1].index)}")
    return d[from_end >= h].reset_index(drop=True), d[from_end < h].reset_index(drop=True)


def align_test(test: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """Re-index an M4 test frame (ds = 1..h) to continue its training series (ds = n+1..n+h).

    Keeps only the series present in ``train`` (so ``--series`` limits both files) and
    fails if a training series has no test values.
    """
    last = train.groupby("unique_id")["ds"].max()
    missing = sorted(set(last.index) - set(test["unique_id"]))
    if missing:
        raise ValueError(f"{len(missing)} training series missing from the test file, e.g. {missing[:5]}")
    out = test[test["unique_id"].isin(last.index)].copy()
    out["ds"] = out["ds"] + out["unique_id"].map(last).astype(np.int64)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- benchmark


def forecast_each_method(
    train: pd.DataFrame, h: int, methods: list[str], n_jobs: int = -1, params: dict[str, dict] | None = None
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Forecast with one method at a time so each method gets its own wall-clock time.

    One zoo call for all methods would be faster in total but would hide which method
    costs what; the timings are part of the benchmark.
    """
    frames, seconds = [], {}
    for name in methods:
        kw = {name: params[name]} if params and name in params else {}
        zoo = ModelZoo(
            methods=[name], season_length=SEASON_LENGTH, freq=1, n_jobs=n_jobs, clip_negative=False, params=kw
        )
        start = time.perf_counter()
        fc = zoo.forecast(train, h=h, intervals=False)
        seconds[name] = time.perf_counter() - start
        bad = int((~np.isfinite(fc["yhat"])).sum())
        if bad:
            warnings.warn(f"{name}: {bad} non-finite forecasts", RuntimeWarning, stacklevel=2)
        frames.append(fc[["unique_id", "ds", "method", "yhat"]])
    return pd.concat(frames, ignore_index=True), seconds


def run_benchmark(
    train_long: pd.DataFrame,
    test_long: pd.DataFrame,
    methods: list[str] | None = None,
    n_jobs: int = -1,
    params: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """Forecast, score against ``test_long`` and summarise: one row per method.

    ``test_long`` must carry the same ``ds`` the forecasts will have (n+1..n+h), as
    :func:`holdout_split` and :func:`align_test` produce. Naive2 is always run, because
    OWA is defined relative to it. Columns: method, smape, mase, owa, seconds, n (series).
    """
    methods = resolve_methods(methods)
    if BASELINE not in methods:
        methods = [BASELINE, *methods]
    sizes = test_long.groupby("unique_id").size()
    if sizes.nunique() != 1:
        raise ValueError(f"every series needs the same number of test values, got {sorted(sizes.unique())}")
    h = int(sizes.iloc[0])
    if set(sizes.index) != set(train_long["unique_id"]):
        raise ValueError("train and test frames hold different series")

    forecasts, seconds = forecast_each_method(train_long, h, methods, n_jobs, params)
    scored = forecasts.merge(test_long[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="inner")
    if len(scored) != len(forecasts):
        raise ValueError("forecast and test time indices do not line up (is test ds aligned with train?)")
    errors = pointwise_errors(scored, insample_scales(train_long, m=SEASON_LENGTH))
    table = summarise(errors, baseline=BASELINE)[["smape", "mase", "owa", "n"]]
    table["seconds"] = pd.Series(seconds)
    table = table.reset_index().rename(columns={"index": "method"})
    table.attrs["h"] = h
    return table[["method", "smape", "mase", "owa", "seconds", "n"]]


ROUTER_CANDIDATES = ("Naive2", "SES", "Holt", "Damped", "Theta", "AutoETS", "ADIDA", "IMAPA", "TSB", "XGBoost")


def run_router(
    train_long: pd.DataFrame,
    test_long: pd.DataFrame,
    candidates: tuple[str, ...] = ROUTER_CANDIDATES,
    n_windows: int = 4,
    metric: str = "owa",
    n_jobs: int = -1,
    trials: int = 0,
    timeout_s: float = 300,
    top_k: int = 2,
    zoo_params: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """The router as one more row: trained on rolling-origin backtests of the training part only.

    The zoo candidates are backtested on ``n_windows`` origins before the holdout; the router
    learns per-series OWA (as FFORMA did) from features of each window's history, then routes
    the candidates' forecasts of the holdout. AutoARIMA and AutoTheta are left out of the
    candidates only for time (2 minutes each per backtest pass on 2 cores).
    """
    from training.forecasting.backtest import backtest
    from training.router.train import combine, learning_rows, router_features, train_router

    start = time.perf_counter()
    zoo_params = {k: v for k, v in (zoo_params or {}).items() if k in candidates}
    zoo = ModelZoo(
        methods=list(candidates), season_length=SEASON_LENGTH, freq=1, n_jobs=n_jobs, clip_negative=False,
        params=zoo_params,
    )  # fmt: skip
    bt = backtest(train_long, zoo, h=H, n_windows=n_windows)
    params: dict[str, Any] = {}
    if trials:
        from training.automl.tune_router import tune_router

        # Each series' last window is the router's holdout: tuning sees only the windows before it.
        x, e, is_last = learning_rows(train_long, bt, 52, metric=metric)
        tuned = tune_router(x[~is_last], e[~is_last], mode="combine", n_trials=trials, timeout_s=timeout_s)
        params = tuned.best_params
    trained = train_router(train_long, bt, season_length=52, params=params, metric=metric, top_k=top_k)
    full = zoo.forecast(train_long, h=H, intervals=False)
    feats = router_features(train_long, 52, trained.rule)
    weights = trained.policy.weights(trained.router.weights(feats))
    routed = combine(full, weights, ["unique_id"])
    both = pd.concat([full[full["method"] == BASELINE][["unique_id", "ds", "method", "yhat"]], routed])
    scored = both.merge(test_long[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="inner")
    errors = pointwise_errors(scored, insample_scales(train_long, m=SEASON_LENGTH))
    table = summarise(errors, baseline=BASELINE)
    row = table.loc["router"]
    return {
        "method": f"router ({trained.policy.mode}, {metric}, top {top_k}, shrink {trained.policy.shrink:g})",
        "smape": float(row["smape"]),
        "mase": float(row["mase"]),
        "owa": float(row["owa"]),
        "seconds": time.perf_counter() - start,
        "n": int(row["n"]),
        "candidates": list(candidates),
        "zoo_params": zoo_params,
        "backtest_windows": n_windows,
        "mode_scores_last_window": trained.mode_scores,
        "shrink_scores_last_window": trained.shrink_scores,
        "anchor": trained.policy.anchor,
        "params": params,
    }


# --------------------------------------------------------------------------- published results


def load_published(path: str | Path) -> pd.DataFrame:
    """The published M4 weekly table: method, team, type, smape, mase, owa (sorted by OWA)."""
    pub = pd.read_csv(path, dtype={"method": str})
    pub = pub.rename(columns={"sMAPE_weekly": "smape", "MASE_weekly": "mase", "OWA_weekly": "owa"})
    return pub.sort_values("owa").reset_index(drop=True)


def published_for(method: str, published: pd.DataFrame | None) -> dict[str, Any] | None:
    """The published benchmark row matching one of our methods, or None."""
    if published is None:
        return None
    for alias in PUBLISHED_NAMES.get(method, ()):
        rows = published[(published["method"] == alias) | (published["team"] == alias)]
        if len(rows):
            r = rows.iloc[0]
            return {"name": alias, **{k: float(r[k]) for k in ("smape", "mase", "owa")}}
    return None


def top_published(published: pd.DataFrame | None, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` best published entries by OWA, for reference."""
    if published is None:
        return []
    return [
        {
            "method": str(r["method"]),
            "team": str(r["team"]),
            "type": str(r["type"]),
            "smape": float(r["smape"]),
            "mase": float(r["mase"]),
            "owa": float(r["owa"]),
        }
        for _, r in published.head(k).iterrows()
    ]


def acceptance(table: pd.DataFrame, published: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Official-test acceptance checks: our figure vs the published one for Naive2, SES, Theta."""
    checks = []
    ours = table.set_index("method")
    for method, tol in ACCEPTANCE.items():
        pub = published_for(method, published)
        if pub is None or method not in ours.index:
            continue
        for metric in ("smape", "mase"):
            value, ref = float(ours.loc[method, metric]), pub[metric]
            rel = (value - ref) / ref
            ok = abs(value - ref) <= ROUNDING_TOL if tol is None else abs(rel) <= tol
            rule = "equal to 3 decimals" if tol is None else f"within {tol:.0%}"
            checks.append(
                {
                    "method": method,
                    "metric": metric,
                    "ours": value,
                    "published": ref,
                    "rel_diff": rel,
                    "rule": rule,
                    "passed": bool(ok),
                }
            )
    return checks


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def print_report(
    table: pd.DataFrame, published: pd.DataFrame | None, mode: str, total: float, checks: list[dict[str, Any]]
) -> None:
    """Print our table beside the published rows, the top published entries and the checks."""
    from rich.console import Console
    from rich.table import Table

    # Piped output (logs, subprocess) would otherwise be squeezed to 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    t = Table(title=f"M4 Weekly ({mode}, h={table.attrs.get('h', H)}, {int(table['n'].max())} series)")
    for col in ("method", "sMAPE", "MASE", "OWA", "seconds", "pub name", "pub sMAPE", "pub MASE", "pub OWA"):
        t.add_column(col, justify="left" if col in ("method", "pub name") else "right")
    for _, r in table.iterrows():
        pub = published_for(r["method"], published) or {}
        t.add_row(
            r["method"],
            _fmt(r["smape"]),
            _fmt(r["mase"]),
            _fmt(r["owa"]),
            _fmt(r["seconds"], 1),
            pub.get("name", ""),
            _fmt(pub.get("smape")),
            _fmt(pub.get("mase")),
            _fmt(pub.get("owa")),
        )
    console.print(t)
    console.print(f"Total wall time: {total:.1f} s (forecasting {table['seconds'].sum():.1f} s)")

    if published is not None:
        best = Table(title="Best published M4 Weekly entries (official test set)")
        for col in ("method", "team", "type", "sMAPE", "MASE", "OWA"):
            best.add_column(col, justify="right" if col in ("sMAPE", "MASE", "OWA") else "left")
        for r in top_published(published):
            best.add_row(r["method"], r["team"], r["type"], _fmt(r["smape"]), _fmt(r["mase"]), _fmt(r["owa"]))
        console.print(best)

    if mode in NOTES:
        console.print(f"[bold yellow]Note:[/] {NOTES[mode]}")
    else:
        acc = Table(title="Acceptance vs published (official test set)")
        for col in ("method", "metric", "ours", "published", "rel diff", "rule", "result"):
            acc.add_column(col)
        for c in checks:
            acc.add_row(
                c["method"],
                c["metric"],
                f"{c['ours']:.4f}",
                f"{c['published']:.3f}",
                f"{c['rel_diff']:+.2%}",
                c["rule"],
                "PASS" if c["passed"] else "[red]FAIL[/]",
            )
        console.print(acc)


def machine_info() -> dict[str, Any]:
    """Enough about the machine to interpret the timings."""
    import statsforecast

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "statsforecast": statsforecast.__version__,
    }


def build_json(
    table: pd.DataFrame,
    published: pd.DataFrame | None,
    mode: str,
    argv: list[str],
    total: float,
    checks: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Everything needed to trace a figure back to how it was produced."""
    methods = {}
    for _, r in table.iterrows():
        methods[r["method"]] = {
            "smape": float(r["smape"]),
            "mase": float(r["mase"]),
            "owa": float(r["owa"]),
            "seconds": float(r["seconds"]),
            "n_series": int(r["n"]),
            "published": published_for(r["method"], published),
        }
    return {
        "benchmark": "M4 Weekly",
        "mode": mode,
        "command": "python -m bench.m4_weekly " + shlex.join(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "train": str(args.train),
        "test": str(args.test) if args.test else None,
        "h": int(table.attrs.get("h", H)),
        "season_length": SEASON_LENGTH,
        "n_series": int(table["n"].max()),
        "n_jobs": args.n_jobs,
        "params": json.loads(args.params),
        "methods": methods,
        "total_seconds": total,
        "top_published": top_published(published),
        "acceptance": checks if mode == "test" else None,
        "note": NOTES.get(mode),
        "machine": machine_info(),
    }


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.m4_weekly", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=Path, default=DEFAULT_TRAIN, help="M4 Weekly-train.csv")
    p.add_argument(
        "--test",
        type=Path,
        default=None,
        help="M4 Weekly-test.csv (official mode); without it the last 13 weeks are held out",
    )
    p.add_argument(
        "--validation",
        action="store_true",
        help="tune without the holdout: drop each series' last 13 weeks and score the 13 before them",
    )
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--methods",
        default=",".join(default_methods()),
        help="comma-separated zoo methods (default: all); Naive2 is always added for OWA",
    )
    p.add_argument("--n-jobs", type=int, default=-1, help="statsforecast worker processes (-1: all cores)")
    p.add_argument(
        "--params", default="{}", help='JSON hyper-parameters per method, e.g. \'{"NHITS": {"input_size": 104}}\''
    )
    p.add_argument("--series", type=int, default=None, help="use only the first N series (quick runs)")
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED, help="published M4 weekly results CSV")
    p.add_argument("--router", action="store_true", help="add the router (trained on backtests of the train part)")
    p.add_argument("--router-windows", type=int, default=4, help="backtest windows the router learns from")
    p.add_argument("--router-trials", type=int, default=0, help="Optuna trials for the router (0: defaults)")
    p.add_argument(
        "--router-candidates",
        default=",".join(ROUTER_CANDIDATES),
        help="comma-separated members the router chooses from (--params applies to them too)",
    )
    p.add_argument("--router-top-k", type=int, default=2, help="methods a combine-mode router blends")
    p.add_argument(
        "--timesfm",
        action="store_true",
        help="add TimesFM 2.5 zero-shot (runs only with a local checkpoint, STOCKML_TIMESFM_CHECKPOINT)",
    )
    return p.parse_args(argv)


def with_timesfm(methods: list[str], asked: bool) -> list[str]:
    """``methods`` plus TimesFM when asked for and its checkpoint is here; skipped with a message otherwise."""
    from stockml.settings import get_settings
    from training.forecasting.methods import unavailable_methods

    get_settings()  # tells the member where STOCKML_TIMESFM_CHECKPOINT points
    if asked and "TimesFM" not in methods:
        methods = [*methods, "TimesFM"]
    missing = unavailable_methods(methods)
    for name, reason in missing.items():
        print(f"{name} skipped: {reason}")
    return [m for m in methods if m not in missing]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    start = time.perf_counter()
    methods = resolve_methods([m.strip() for m in args.methods.split(",") if m.strip()])
    methods = with_timesfm(methods, args.timesfm)

    data = load_m4(args.train, args.series)
    if args.validation and args.test is not None:
        raise SystemExit("--validation scores weeks of the training file: it cannot be combined with --test")
    if args.test is None:
        mode = "validation" if args.validation else "holdout"
        if args.validation:
            data = holdout_split(data, H)[0]  # the holdout weeks are never seen
        train, test = holdout_split(data, H)
    else:
        mode = "test"
        train, test = data, align_test(load_m4(args.test), data)

    table = run_benchmark(train, test, methods, args.n_jobs, json.loads(args.params))
    if args.router:
        row = run_router(
            train, test, n_windows=args.router_windows, n_jobs=args.n_jobs, trials=args.router_trials,
            top_k=args.router_top_k, zoo_params=json.loads(args.params),
            candidates=tuple(resolve_methods([m.strip() for m in args.router_candidates.split(",") if m.strip()])),
        )  # fmt: skip
        print(json.dumps({k: v for k, v in row.items()}, default=str))
        table = pd.concat([table, pd.DataFrame([{k: row[k] for k in table.columns}])], ignore_index=True)
        table = table.sort_values("owa").reset_index(drop=True)
        table.attrs["h"] = H
    total = time.perf_counter() - start
    published = load_published(args.published) if args.published and Path(args.published).exists() else None
    checks = acceptance(table, published) if mode == "test" else []

    print_report(table, published, mode, total, checks)
    if args.out:
        payload = build_json(table, published, mode, argv, total, checks, args)
        args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
