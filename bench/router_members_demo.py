"""The router with and without the new deep members (NHITS, LSTM) on the demo catalogue, same holdout window.

What it measures (issue 12's demo-catalogue target):

- one rolling-origin backtest (h = 13, 3 windows) of the default zoo (statistical members and
  XGBoost) and of the new members, each group timed on its own (the deep members refit every 4
  origins, so once over 3 windows);
- two routers trained on that backtest (:func:`training.router.train.train_router`, defaults,
  no AutoML): one over the default zoo only, one over the default zoo plus the new members; both
  judged on the same last window (SKUs, cutoff), mean MASE overall and per demand pattern, with the
  Wilcoxon and Diebold–Mariano tests of :func:`training.evaluation.compare.significance` at 5 %;
- which member the router with the new members gives the largest weight, per pattern, on that window;
- each member's fit and predict time on the whole history (``--skip-member-times`` leaves it out);
- the router's inference (:meth:`RouterModel.predict`, members carried as the registered model
  carries them) for ``--infer-skus`` SKUs of a second catalogue, with and without the new members.

Zoo tuning and AutoML are left out (both routers get the defaults), so the difference is the members.
NeuralProphet (local, about a second per series) and TimesFM (no weights here) are not in it.

    python -m bench.router_members_demo --skus 300 --out bench/results/router_members_demo_2026-12-02.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

WITH, WITHOUT = "router+new", "router"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 2)


def describe(t) -> dict:
    """The chosen blend policy of a trained router and its candidates."""
    p = t.policy
    return {"mode": p.mode, "shrink": p.shrink, "anchor": p.anchor, "best_single": t.best_single,
            "methods": list(t.router.methods_)}  # fmt: skip


def compare_routers(with_, without, patterns: pd.Series) -> dict:
    """Mean MASE and the two tests, overall and per pattern, of the router with vs without the new members."""
    from training.evaluation.compare import pointwise_scaled_errors, significance
    from training.router.train import ROUTER

    def routed(t, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        fc = t.holdout_forecasts[t.holdout_forecasts["method"] == ROUTER].assign(method=label)
        err = t.holdout_errors[t.holdout_errors["method"] == ROUTER].assign(method=label)
        return fc, err

    (fw, ew), (fo, eo) = routed(with_, WITH), routed(without, WITHOUT)
    errors = pd.concat([ew, eo], ignore_index=True)
    pointwise = pointwise_scaled_errors(pd.concat([fw, fo], ignore_index=True), errors)
    groups = {"all": errors["unique_id"].unique()}
    groups.update({p: ids.index.to_numpy() for p, ids in patterns.groupby(patterns)})
    out = {}
    for name, ids in groups.items():
        e, pw = errors[errors["unique_id"].isin(ids)], pointwise[pointwise["unique_id"].isin(ids)]
        if e.empty:
            continue
        row = significance(e, WITH, "mase", pw).iloc[0]
        out[name] = {
            "n_skus": int(row["n_skus"]),
            "mase_with_new": float(row["mean_reference"]),
            "mase_without": float(row["mean_method"]),
            "wilcoxon_p": float(row["wilcoxon_p"]),
            "dm_stat": float(row["dm_stat"]),
            "dm_p": float(row["dm_p"]),
            "better": str(row["better"]),  # which router is significantly better (both tests), or "neither"
        }
    return out


def router_choices(t, demand: pd.DataFrame, backtest) -> dict:
    """Per pattern, the share of holdout SKUs whose largest router weight goes to each member."""
    from training.router.train import learning_rows

    x, _e, last = learning_rows(demand, backtest, t.season_length, t.rule, "mase")
    x_ho = x[last]
    weights = t.policy.weights(t.router.weights(x_ho))
    top = weights.idxmax(axis=1)
    pattern = t.rule.patterns(x_ho)
    frame = pd.DataFrame({"top": top.to_numpy(), "pattern": pattern.to_numpy()})
    out = {"all": frame["top"].value_counts(normalize=True).round(4).to_dict()}
    for p, part in frame.groupby("pattern"):
        out[str(p)] = part["top"].value_counts(normalize=True).round(4).to_dict()
    mean_w = weights.mean().sort_values(ascending=False)
    out["mean_weight"] = mean_w[mean_w > 0].round(4).to_dict()
    return out


def member_times(demand: pd.DataFrame, methods: list[str], horizon: int) -> tuple[dict, object]:
    """Fit and predict wall time of each member alone on ``demand``; returns them and the fitted zoo."""
    from training.forecasting.zoo import ModelZoo

    times, fitted = {}, {}
    for m in methods:
        zoo = ModelZoo([m], horizon=horizon)
        _, fit_s = timed(zoo.fit, demand)
        _, predict_s = timed(zoo.predict, horizon)
        times[m] = {"fit_s": fit_s, "predict_s": predict_s}
        fitted[m] = zoo.fitted_[m]
        print(f"  member {m:<16} fit {fit_s:7.2f} s  predict {predict_s:7.2f} s", flush=True)
    zoo = ModelZoo(list(methods), horizon=horizon)
    zoo.fitted_ = fitted
    return times, zoo


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench.router_members_demo", description=__doc__.split("\n")[0])
    ap.add_argument("--skus", type=int, default=300)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--new", default="NHITS,LSTM", help="the new members, comma-separated")
    ap.add_argument("--infer-skus", type=int, default=10_000, help="SKUs for the inference timing (0: skip)")
    ap.add_argument("--skip-member-times", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)

    import torch

    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting.backtest import BacktestResult, backtest
    from training.forecasting.methods import default_methods, method_registry
    from training.forecasting.metrics import summarise
    from training.forecasting.zoo import ModelZoo
    from training.router.predict import RouterModel
    from training.router.train import router_features, train_router

    h = 13
    new = [m.strip() for m in a.new.split(",") if m.strip()]
    base = list(default_methods())
    registry = method_registry()
    groups = {"statistical": [m for m in base if registry[m].family not in ("global",)]}
    groups.update({m: [m] for m in base if registry[m].family == "global"})
    groups.update({m: [m] for m in new})
    print(f"router members benchmark: {a.skus} SKUs x {a.weeks} weeks, seed {a.seed}; new members {new}", flush=True)
    demand = to_weekly_demand(generate_catalogue(a.skus, a.weeks, a.seed, dirty_rows=False).movements)

    parts, backtest_s = [], {}
    for label, methods in groups.items():
        r, backtest_s[label] = timed(backtest, demand, ModelZoo(methods, horizon=h), h=h, n_windows=a.windows)
        parts.append(r)
        print(f"  backtest {label:<12} {backtest_s[label]:8.1f} s ({len(methods)} member(s))", flush=True)
    forecasts = pd.concat([p.forecasts for p in parts], ignore_index=True)
    errors = pd.concat([p.errors for p in parts], ignore_index=True)
    full = BacktestResult(forecasts, errors, summarise(errors), parts[0].excluded, h, a.windows)
    keep = ~errors["method"].isin(new)
    only_base = BacktestResult(
        forecasts[~forecasts["method"].isin(new)], errors[keep], summarise(errors[keep]), parts[0].excluded, h,
        a.windows,
    )  # fmt: skip

    with_, router_with_s = timed(train_router, demand, full, 52)
    without, router_without_s = timed(train_router, demand, only_base, 52)
    print(f"  routers trained ({router_with_s:.1f} s with, {router_without_s:.1f} s without)", flush=True)
    patterns = with_.rule.patterns(router_features(demand, 52, with_.rule))
    comparison = compare_routers(with_, without, patterns)
    members_table = summarise(errors)[["mase", "smape", "owa"]].sort_values("mase").round(4)
    e_pat = errors.assign(pattern=errors["unique_id"].map(patterns))
    by_pattern = {
        str(p): summarise(part)["mase"].sort_values().round(4).to_dict() for p, part in e_pat.groupby("pattern")
    }

    result: dict = {
        "benchmark": "router with vs without the new members, demo catalogue",
        "command": "python -m bench.router_members_demo " + shlex.join(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "skus": a.skus,
        "weeks": a.weeks,
        "seed": a.seed,
        "windows": a.windows,
        "horizon": h,
        "new_members": new,
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
        },
        "backtest_s": backtest_s,
        "router_training_s": {"with_new": router_with_s, "without": router_without_s},
        "routers": {"with_new": describe(with_), "without": describe(without)},
        "comparison": comparison,
        "router_choices_with_new": router_choices(with_, demand, full),
        "router_choices_without": router_choices(without, demand, only_base),
        "members_backtest": members_table.to_dict(orient="index"),
        "members_backtest_mase_by_pattern": by_pattern,
        "pattern_counts": patterns.value_counts().to_dict(),
    }
    print(json.dumps(comparison, indent=2), flush=True)

    if not a.skip_member_times or a.infer_skus:
        times, zoo = member_times(demand, list(with_.router.methods_), h)
        result["member_times_s"] = {"skus": int(demand["unique_id"].nunique()), "per_member": times}
    if a.infer_skus:
        big = to_weekly_demand(generate_catalogue(a.infer_skus, a.weeks, a.seed + 1, dirty_rows=False).movements)
        inference = {"skus": int(big["unique_id"].nunique()), "rows": len(big)}
        for label, t in (("with_new", with_), ("without", without)):
            sub = ModelZoo(list(t.router.methods_), horizon=h)
            sub.fitted_ = {m: zoo.fitted_[m] for m in t.router.methods_}
            model = RouterModel.from_training(t, zoo=sub)
            fc, seconds = timed(model.predict, big, h)
            inference[label] = {"seconds": seconds, "forecast_rows": len(fc),
                                "routed_to": fc.groupby("method")["unique_id"].nunique().to_dict()}  # fmt: skip
            print(f"  inference {label:<9} {inference['skus']} SKUs: {seconds:.1f} s", flush=True)
        result["inference"] = inference
    if a.out:
        a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
