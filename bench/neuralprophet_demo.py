"""Cost and accuracy of the NeuralProphet member on demo SKUs, with and without the price/promotion
regressors, beside a few statistical members (rolling-origin backtest, h = 13, 3 windows).

    PYTHONPATH=. python -m bench.neuralprophet_demo --skus 100

Prints the wall time of each NeuralProphet backtest (one model per SKU, refitted every 2 origins)
and the M4 metrics per method, on all SKUs and on those with a promotion inside a scored window.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from training.data.demo import generate_catalogue
from training.data.demo_prices import demo_price_promotions
from training.data.validate import validate, validate_price_promotions
from training.data.weekly import to_weekly_demand, to_weekly_regressors
from training.forecasting.backtest import backtest
from training.forecasting.metrics import summarise
from training.forecasting.zoo import ModelZoo

BASE = ["Naive", "Naive2", "SeasonalNaive", "Holt", "AutoETS"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=100)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument(
        "--regressors", default="on_promotion", help="Comma-separated regressors (unit_price,on_promotion)."
    )
    ap.add_argument("--variants", default="with,without", help="with, without or both (comma-separated).")
    args = ap.parse_args()
    cat = generate_catalogue(args.skus, args.weeks, seed=args.seed, dirty_rows=False)
    demand = to_weekly_demand(validate(cat.products, cat.movements, today=cat.end).movements)
    prices, _, _ = validate_price_promotions(demo_price_promotions(cat), set(cat.products["sku"]))
    regressors = to_weekly_regressors(prices)
    params = {"NeuralProphet": {"epochs": args.epochs, "regressors": tuple(args.regressors.split(","))}}
    t = time.perf_counter()
    base = backtest(demand, ModelZoo(BASE, n_jobs=1), 13, 3)
    print(f"statistical members ({', '.join(BASE)}): {time.perf_counter() - t:.1f} s")
    errors = [base.errors]
    variants = {"with": ("NeuralProphet", regressors), "without": ("NeuralProphet (no regressors)", None)}
    for label, regs in (variants[v] for v in args.variants.split(",")):
        zoo = ModelZoo(["NeuralProphet"], params=params, regressors=regs, n_jobs=1)
        t = time.perf_counter()
        res = backtest(demand, zoo, 13, 3)
        took = time.perf_counter() - t
        n = demand["unique_id"].nunique() - len(res.excluded)
        print(f"{label}: {took:.1f} s for {n} SKUs x 3 origins ({took / n:.2f} s per SKU)")
        errors.append(res.errors.assign(method=label))
    errors = pd.concat(errors, ignore_index=True)
    print(summarise(errors).round(3).to_string())
    promo = regressors[regressors["on_promotion"] > 0][["unique_id", "ds"]]
    fc = base.forecasts[["unique_id", "ds", "cutoff"]].drop_duplicates().merge(promo, on=["unique_id", "ds"])
    keys = fc[["unique_id", "cutoff"]].drop_duplicates()
    sub = errors.merge(keys, on=["unique_id", "cutoff"])
    print(f"\nwindows with a promotion in the horizon ({len(keys)}):")
    print(summarise(sub).round(3).to_string())


if __name__ == "__main__":
    main()
