"""Wall time of the zoo's backtest on the first N SKUs of a weekly demand parquet (all methods, 3 windows).

Used to compare two commits on the same machine, back to back: check each out and run this file with
``PYTHONPATH=<checkout>``. ``--api old`` drives the code before issue 10 (the pipeline's own SKU
chunks, local and global members in separate zoos); ``--api new`` the zoo's ``chunks``.

    PYTHONPATH=<checkout> python bench/backtest_time.py DEMAND.parquet --api new --skus 100
"""

from __future__ import annotations

import argparse
import time

import pandas as pd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("demand", help="weekly demand parquet (unique_id, ds, y), e.g. a run folder's demand.parquet")
    p.add_argument("--api", choices=("old", "new"), default="new")
    p.add_argument("--skus", type=int, default=100)
    a = p.parse_args()
    from training.forecasting.backtest import backtest
    from training.forecasting.zoo import ModelZoo

    d = pd.read_parquet(a.demand)
    ids = d["unique_id"].unique()[: a.skus]
    d = d[d["unique_id"].isin(ids)]
    start = time.perf_counter()
    if a.api == "old":
        full = ModelZoo(n_jobs=-1)
        n = max(1, min(8, len(ids) // 50 or 1))
        jobs = [(ModelZoo(full.local_methods, n_jobs=-1), ids[i::n]) for i in range(n)]
        jobs.append((ModelZoo(full.global_methods, n_jobs=-1), ids))
        rows = sum(len(backtest(d[d["unique_id"].isin(c)], z, 13, 3).forecasts) for z, c in jobs)
    else:
        rows = len(backtest(d, ModelZoo(n_jobs=-1), 13, 3, chunks=8).forecasts)
    print(f"api={a.api} skus={len(ids)} forecast_rows={rows} seconds={time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
