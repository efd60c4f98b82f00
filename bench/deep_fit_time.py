"""Fit and predict wall time of the deep members (LSTM, NHITS) on a demo catalogue (default 1,000 SKUs × 156 weeks).

The member's defaults are what is timed (the zoo's ``W-MON`` weekly demand, h = 13, CPU unless torch sees
a GPU); ``--params`` overrides them as JSON, e.g. ``'{"NHITS": {"max_steps": 500}}'``.

    python -m bench.deep_fit_time --methods NHITS,LSTM --out bench/results/deep_fit_time_2026-12-02.json
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.deep_fit_time", description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="NHITS,LSTM")
    p.add_argument("--skus", type=int, default=1000)
    p.add_argument("--weeks", type=int, default=156)
    p.add_argument("--params", default="{}", help="JSON: {method: {param: value}}")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)

    import torch

    from training.data.demo import generate_catalogue
    from training.data.weekly import to_weekly_demand
    from training.forecasting.deep import library_versions
    from training.forecasting.zoo import ModelZoo

    demand = to_weekly_demand(generate_catalogue(a.skus, a.weeks, seed=42, dirty_rows=False).movements)
    params = json.loads(a.params)
    results = {}
    for name in [m.strip() for m in a.methods.split(",") if m.strip()]:
        zoo = ModelZoo(methods=[name], params={name: params.get(name, {})} if name in params else {})
        zoo.horizon = 13
        start = time.perf_counter()
        zoo.fit(demand)
        fit_s = time.perf_counter() - start
        member = zoo.fitted_[name]
        start = time.perf_counter()
        fc = zoo.predict(13)
        predict_s = time.perf_counter() - start
        results[name] = {
            "fit_seconds": fit_s,
            "predict_seconds": predict_s,
            "n_params": int(sum(t.numel() for t in member.model_.parameters())),
            "forecast_rows": len(fc),
            "params": member.params(),
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "params"}))
    payload = {
        "benchmark": "deep member fit time",
        "command": "python -m bench.deep_fit_time " + shlex.join(argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "n_series": int(demand["unique_id"].nunique()),
        "rows": len(demand),
        "weeks": a.weeks,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), **library_versions()},
        "methods": results,
    }
    if a.out:
        a.out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
