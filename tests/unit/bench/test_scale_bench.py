"""bench.scale's arithmetic: the member choice by measured cost, the fitted exponents, the stage meter."""

from __future__ import annotations

import math
import time

import numpy as np

from bench.scale import StageMeter, choose_members, exponents, markdown_table, workers_needed


def test_the_most_expensive_members_are_left_out_until_the_budget_fits():
    costs = {"Naive": 0.001, "SES": 0.002, "AutoETS": 0.02, "AutoARIMA": 0.1}
    kept, dropped = choose_members(costs, largest=10_000, budget_s=300)  # 0.123 s/SKU = 1,230 s: over
    assert dropped == ["AutoARIMA"] and kept == ["Naive", "SES", "AutoETS"]  # 230 s fits
    kept, dropped = choose_members(costs, largest=10_000, budget_s=1)
    assert kept == ["Naive", "SES"] and dropped == ["AutoARIMA", "AutoETS"]  # a router needs two


def _size(skus: int, a: float, b: float) -> dict:
    stages = [{"stage": "backtest", "seconds": a * skus, "peak_rss_mb": 100.0},
              {"stage": "automl", "seconds": b * skus**2, "peak_rss_mb": 100.0}]  # fmt: skip
    return {
        "skus": skus,
        "stages": stages,
        "training_seconds": a * skus + b * skus**2,
        "inference_seconds": 0.01 * skus,
    }


def test_exponents_are_the_slopes_of_the_log_log_curve():
    sizes = [_size(n, 0.05, 1e-6) for n in (1000, 3000, 10000)]
    e = exponents(sizes)
    assert math.isclose(e["backtest"], 1.0, abs_tol=0.01) and math.isclose(e["automl"], 2.0, abs_tol=0.01)
    assert math.isclose(e["inference"], 1.0, abs_tol=0.01) and 1.0 < e["training"] < 2.0
    assert exponents(sizes[:1]) == {}
    table = markdown_table({"sizes": sizes, "exponents": e})
    assert "| backtest | 50.0 (100) | 150.0 (100) | 500.0 (100) | 1.0 |" in table


def test_the_stage_meter_times_and_sees_memory_grow():
    meter = StageMeter(interval_s=0.01)
    with meter("grow"):
        block = np.ones(50 * 2**20 // 8)  # 50 MB, touched
        time.sleep(0.1)
    del block
    (stage,) = meter.stages
    assert stage["stage"] == "grow" and stage["seconds"] >= 0.1
    assert stage["peak_rss_mb"] - stage["start_rss_mb"] >= 45  # the block, seen by the sampler


def test_the_worker_arithmetic_spreads_only_the_stages_that_split_by_sku():
    sizes = [
        {"skus": 1000, "stages": [{"stage": "backtest", "seconds": 100.0}, {"stage": "automl", "seconds": 50.0}]},
        {"skus": 10000, "stages": [{"stage": "backtest", "seconds": 1000.0}, {"stage": "automl", "seconds": 100.0}]},
    ]
    exps = {"backtest": 0.8, "automl": 0.5}  # per SKU: never below linear; a global fit: as fitted
    out = workers_needed(sizes, exps, skus=100_000, night_h=1.0)
    assert out["stage_seconds_one_worker"] == {"backtest": 10000.0, "automl": round(100 * 10**0.5, 1)}
    assert out["split_by_sku_seconds"] == 10000.0
    assert out["workers"] == 4  # 316 s on one worker + 10,000 s / 3 = 3,650 s > 3,600 s; / 4: 2,816 s
    assert workers_needed(sizes, exps, skus=100_000, night_h=0.05)["workers"] is None  # the serial part alone is over
