"""The serving bandit's promotion rates, measured by simulation with its own decision code.

Why: README and ``bench/RESULTS.md`` state how often the champion/challenger bandit promotes a
better, an equal (a false promotion) and a worse challenger. Those figures must come from the code
the service runs, so this benchmark drives :mod:`serving.bentos.bandit` exactly as
:class:`serving.bentos.traffic.Bandit` does:

- requests are routed by :func:`~serving.bentos.bandit.choose` (Thompson sampling) on the posteriors
  as they stand; the posteriors change only when feedback arrives, so a whole feedback batch is
  routed on the same posteriors (the service reads them from the outcome store);
- each outcome's reward is :func:`~serving.bentos.bandit.reward`, 1 / (1 + |y - yhat| / scale), with
  ``scale`` the :func:`~serving.bentos.bandit.mase_scale` of the SKU's history; the batch is folded
  into the arm's Beta posterior with :meth:`~serving.bentos.bandit.Posterior.update` (alpha += r,
  beta += 1 - r, the update the outcome store makes);
- after each feedback batch the rule :func:`~serving.bentos.bandit.decide` is evaluated with the
  production Monte-Carlo draws and seed; a "stop" ends the challenger's traffic, a "promote" is the
  bandit asking the guardrails to promote (the guardrails themselves are not simulated).

The simulated catalogue: ``POOL_SKUS`` SKUs with weekly Poisson demand whose rates are log-normal
(median ``MEDIAN_RATE``), 52 weeks of history each (its scale). The champion forecasts each week's
demand as rate × (1 + ``CHAMPION_ERROR`` × z), z standard normal, clipped at 0; a challenger's error
is the champion's spread times a factor (``SCENARIOS``): halved (better), the same (equal), 1.6
times (worse). Reward kinds: ``continuous`` is the service's reward itself; ``bernoulli`` replaces
each continuous reward r by a coin flip with P(1) = r (same means, the largest variance a [0, 1]
reward can have: the worst case for the fractional Beta update).

A run ends at the first promote or stop, or after ``--max-outcomes`` outcomes (both arms) as
"explore". One simulated trajectory serves every threshold (the rule's stop does not depend on the
promote threshold, and a higher threshold can only promote later), so the thresholds are compared on
the same traffic. Runs are seeded: the same arguments give the same JSON figures.

Example (the figures in bench/RESULTS.md)::

    python -m bench.bandit --runs 200 --out bench/results/bandit_2026-12-01.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.bentos import bandit as bd
from stockml.settings_serving import BanditSettings

POOL_SKUS = 500
MEDIAN_RATE = 5.0  # weekly units of the median SKU
RATE_SIGMA = 1.0  # log-normal spread of the SKUs' rates
HISTORY_WEEKS = 52
CHAMPION_ERROR = 0.5  # relative spread of the champion's forecast error
SCENARIOS = {"better": 0.5, "equal": 1.0, "worse": 1.6}  # challenger error spread / champion's
REWARD_KINDS = ("continuous", "bernoulli")
DEFAULT_THRESHOLDS = (0.95, 0.99, 0.995)
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Catalogue:
    """The simulated SKUs: weekly Poisson rates and the MASE scale of each one's history."""

    rates: np.ndarray
    scales: np.ndarray

    @classmethod
    def build(cls, seed: int, n: int = POOL_SKUS) -> Catalogue:
        rng = np.random.default_rng(seed)
        rates = MEDIAN_RATE * np.exp(RATE_SIGMA * rng.standard_normal(n))
        scales = np.array([bd.mase_scale(rng.poisson(r, HISTORY_WEEKS).astype(float)) for r in rates])
        return cls(rates, scales)


class Outcomes:
    """Draws one arm's realised rewards: a SKU, its actual demand, the arm's forecast, the service's reward."""

    def __init__(self, catalogue: Catalogue, error: float, kind: str, rng: np.random.Generator) -> None:
        if kind not in REWARD_KINDS:
            raise ValueError(f"reward kind {kind!r}: expected one of {REWARD_KINDS}")
        self.catalogue, self.error, self.kind, self.rng = catalogue, error, kind, rng

    def draw(self) -> float:
        i = int(self.rng.integers(len(self.catalogue.rates)))
        rate = float(self.catalogue.rates[i])
        y = float(self.rng.poisson(rate))
        yhat = max(0.0, rate * (1.0 + self.error * float(self.rng.standard_normal())))
        r = bd.reward(y, yhat, float(self.catalogue.scales[i]))
        return float(self.rng.random() < r) if self.kind == "bernoulli" else r


@dataclass(frozen=True)
class RunResult:
    """One threshold's outcome of one simulated run."""

    decision: str  # promote | stop | explore
    outcomes: int  # outcomes (both arms) when it was decided
    challenger_n: int
    challenger_share: float  # of the traffic until then


def simulate(
    seed: int,
    catalogue: Catalogue,
    challenger_factor: float,
    kind: str,
    thresholds: tuple[float, ...],
    config: BanditSettings,
    max_outcomes: int,
    feedback_batch: int,
) -> dict[float, RunResult]:
    """One seeded run of live traffic; the first decision per promote threshold."""
    rng = np.random.default_rng(seed)
    arms = {
        "champion": Outcomes(catalogue, CHAMPION_ERROR, kind, rng),
        "challenger": Outcomes(catalogue, CHAMPION_ERROR * challenger_factor, kind, rng),
    }
    post = {"champion": bd.Posterior(), "challenger": bd.Posterior()}
    served: Counter[str] = Counter()
    pending = sorted(thresholds)
    out: dict[float, RunResult] = {}
    total = 0

    def result(decision: str) -> RunResult:
        return RunResult(decision, total, post["challenger"].n, served["challenger"] / max(total, 1))

    while pending and total < max_outcomes:
        rewards: dict[str, list[float]] = {"champion": [], "challenger": []}
        for _ in range(feedback_batch):
            arm = bd.choose(post["champion"], post["challenger"], rng)
            served[arm] += 1
            rewards[arm].append(arms[arm].draw())
        post = {a: post[a].update(rewards[a]) for a in post}
        total += feedback_batch
        while pending:  # the lowest pending threshold decides first: a higher one can only promote later
            d = bd.decide(
                post["champion"],
                post["challenger"],
                min_outcomes=config.min_outcomes,
                p_promote=pending[0],
                p_stop=config.p_stop,
                min_stop_outcomes=config.min_stop_outcomes,
            )
            if d.action == "promote":
                out[pending.pop(0)] = result("promote")
                continue
            if d.action == "stop":
                out.update({t: result("stop") for t in pending})
                pending = []
            break
    out.update({t: result("explore") for t in pending})
    return out


def mean_reward(catalogue: Catalogue, factor: float, kind: str, seed: int, n: int = 20_000) -> float:
    """The arm's expected reward (Monte Carlo), so each scenario's effect size is on record."""
    draws = Outcomes(catalogue, CHAMPION_ERROR * factor, kind, np.random.default_rng(seed))
    return float(np.mean([draws.draw() for _ in range(n)]))


def summarise(results: list[RunResult]) -> dict[str, float | int]:
    runs = len(results)
    counts = Counter(r.decision for r in results)
    decided = [r.outcomes for r in results if r.decision != "explore"]
    return {
        "runs": runs,
        **{f"{k}_rate": counts[k] / runs for k in ("promote", "stop", "explore")},
        "median_outcomes_to_decision": float(np.median(decided)) if decided else None,
        "median_challenger_share": float(np.median([r.challenger_share for r in results])),
    }


def run_benchmark(
    runs: int,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    max_outcomes: int = 5000,
    feedback_batch: int = 25,
    seed: int = 0,
    config: BanditSettings | None = None,
    kinds: tuple[str, ...] = REWARD_KINDS,
    scenarios: dict[str, float] | None = None,
    reward_draws: int = 20_000,
) -> dict:
    """Every (reward kind, scenario, threshold) cell over ``runs`` seeded runs; the JSON the CLI writes."""
    config = config or BanditSettings()
    scenarios = SCENARIOS if scenarios is None else scenarios
    catalogue = Catalogue.build(seed)
    cells = []
    t0 = time.perf_counter()
    for kind in kinds:
        champion_mean = mean_reward(catalogue, 1.0, kind, seed + 1, reward_draws)
        for name, factor in scenarios.items():
            per_threshold: dict[float, list[RunResult]] = {t: [] for t in thresholds}
            for k in range(runs):
                for t, r in simulate(
                    seed * 1_000_003 + k, catalogue, factor, kind, thresholds, config, max_outcomes, feedback_batch
                ).items():
                    per_threshold[t].append(r)
            challenger_mean = mean_reward(catalogue, factor, kind, seed + 2, reward_draws)
            for t in thresholds:
                cells.append(
                    {
                        "rewards": kind,
                        "scenario": name,
                        "challenger_error_factor": factor,
                        "champion_mean_reward": round(champion_mean, 4),
                        "challenger_mean_reward": round(challenger_mean, 4),
                        "p_promote": t,
                        **summarise(per_threshold[t]),
                    }
                )
    return {
        "benchmark": "bench.bandit",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": {
            "runs": runs,
            "seed": seed,
            "max_outcomes": max_outcomes,
            "feedback_batch": feedback_batch,
            "thresholds": list(thresholds),
            "bandit_settings": config.model_dump(),
            "mc_draws": bd.MC_DRAWS,
            "reward_draws": reward_draws,
            "catalogue": {
                "skus": POOL_SKUS,
                "median_rate": MEDIAN_RATE,
                "rate_sigma": RATE_SIGMA,
                "history_weeks": HISTORY_WEEKS,
            },
            "champion_error": CHAMPION_ERROR,
            "scenarios": scenarios,
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "cells": cells,
    }


def table(report: dict) -> str:
    """The Markdown table RESULTS.md quotes (a unit test checks that it quotes exactly this)."""
    lines = [
        "| rewards | challenger (error × champion's) | mean reward, champion → challenger | P_PROMOTE | promoted "
        f"| stopped | undecided at {report['config']['max_outcomes']:,} | median outcomes to decision |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["cells"]:
        med = c["median_outcomes_to_decision"]
        lines.append(
            f"| {c['rewards']} | {c['scenario']} ({c['challenger_error_factor']:g}) "
            f"| {c['champion_mean_reward']:.3f} → {c['challenger_mean_reward']:.3f} | {c['p_promote']:g} "
            f"| {c['promote_rate']:.0%} | {c['stop_rate']:.0%} | {c['explore_rate']:.0%} "
            f"| {'—' if med is None else f'{med:.0f}'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="seeded runs per scenario and reward kind")
    ap.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)), help="P_PROMOTE values")
    ap.add_argument("--max-outcomes", type=int, default=5000, help="outcomes (both arms) before a run is undecided")
    ap.add_argument(
        "--feedback-batch", type=int, default=25, help="outcomes per /feedback call (rule evaluated after each)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reward-draws", type=int, default=20_000, help="draws estimating each arm's mean reward")
    ap.add_argument("--out", type=Path, default=RESULTS / f"bandit_{dt.date.today().isoformat()}.json")
    args = ap.parse_args(argv)
    thresholds = tuple(sorted(float(t) for t in args.thresholds.split(",")))
    report = run_benchmark(
        args.runs, thresholds, args.max_outcomes, args.feedback_batch, args.seed, reward_draws=args.reward_draws
    )
    report["command"] = "python -m bench.bandit " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\n{report['seconds']} s; written to {args.out}")
    return report


if __name__ == "__main__":
    main()
