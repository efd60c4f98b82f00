"""One published-style inventory instance: the DP optimum, the tuned classical policies and the RL agent.

Why: the agent's and the baselines' costs mean something only next to the optimum, and the optimum is
known for small i.i.d. instances (Zipkin 2008 tabulates the lost-sales ones). The instance is Poisson
demand with mean ``M``, holding ``h`` and penalty ``p`` per unit, lead time ``L``, no fixed or purchase
cost. ``optimal`` is the DP's gain (relative value iteration, exact up to truncation: a zero-width
interval) and, beside it, the DP policy simulated on the evaluation paths with its interval. The
classical policies are tuned on training paths (their own seed) and every policy is then scored on the
same ``--seeds`` evaluation paths of ``--eval-periods`` periods after a warm-up (common random numbers);
the interval is the Student-t 95 % interval over those paths. The agent trains on this instance.

Example (the figures in bench/RESULTS.md)::

    python -m bench.rl_inventory --mode lost_sales --demand poisson --mean 5 --holding 1 --penalty 4 \
        --lead-time 4 --seeds 10 --train-steps 1000000 --out bench/results/rl_zipkin_L4.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_report
from rl_agent import dp
from rl_agent.agent import AgentConfig, RLAgent
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec
from rl_agent.env import ProductCase
from rl_agent.policies import DPPolicy, Policy
from rl_agent.simulate import mean_ci95, simulate
from rl_agent.tuning import TUNERS, analytic_level


def score(policy: Policy, spec: InventorySpec, demand: np.ndarray, start: float, warmup: int) -> dict[str, Any]:
    params = BatchParams.repeat(spec, demand.shape[0])
    result = simulate(policy, params, demand, BatchState.start(params, start), warmup=warmup)
    mean, lo, hi = mean_ci95(result.cost_per_period)
    return {
        "cost_per_period": round(mean, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "fill_rate": round(float(result.fill_rate.mean()), 4),
        "cycle_service": round(float(result.cycle_service.mean()), 4),
        "average_stock": round(float(result.average_stock.mean()), 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    costs = CostConfig(args.holding, args.penalty)
    spec = InventorySpec(costs, lead_time=args.lead_time, mode=args.mode)
    train = np.random.default_rng(args.seed).poisson(args.mean, (args.train_paths, args.train_periods)).astype(float)
    evaluation = np.random.default_rng(args.seed + 1).poisson(args.mean, (args.seeds, args.eval_periods)).astype(float)
    start = float(analytic_level(spec, train))
    policies: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    optimum = None
    if args.lead_time <= 4:
        began = time.perf_counter()
        solution = dp.solve(dp.poisson_pmf(args.mean), costs, args.lead_time, args.mode)
        timings["dp_seconds"] = round(time.perf_counter() - began, 2)
        optimum = solution.gain
        policies["optimal"] = {
            "cost_per_period": round(solution.gain, 4),
            "ci95": [round(solution.gain, 4), round(solution.gain, 4)],
            "source": "DP gain (relative value iteration), exact up to truncation: zero-width interval",
            "converged": solution.converged,
            "iterations": solution.iterations,
            "simulated": score(DPPolicy(solution, args.lead_time), spec, evaluation, start, args.warmup),
        }
    for name, tuner in TUNERS.items():
        began = time.perf_counter()
        tuned = tuner(spec, train, args.warmup)
        timings[f"{name}_tune_seconds"] = round(time.perf_counter() - began, 2)
        policies[name] = {**score(tuned.policy, spec, evaluation, start, args.warmup), "parameters": tuned.parameters}
    if args.mode == "backorder":
        level = dp.base_stock_level(dp.poisson_pmf(args.mean), args.lead_time, costs)
        policies["base_stock"]["analytic_level"] = level
        policies["base_stock"]["analytic_cost"] = round(
            dp.base_stock_cost(dp.poisson_pmf(args.mean), args.lead_time, costs, level), 4
        )
        policies["base_stock"]["equals_analytic"] = bool(policies["base_stock"]["parameters"]["level"] == level)
    if args.train_steps > 0:
        case = ProductCase.poisson(spec, args.mean)
        config = AgentConfig(
            episode_length=args.episode_length, seed=args.seed, threads=args.threads, target_range=args.target_range
        )
        agent = RLAgent.train([case], args.train_steps, config)
        timings["rl_train_seconds"] = agent.train_info["train_seconds"]
        policies["rl"] = {
            **score(agent.policy_for([case.profile] * args.seeds), spec, evaluation, start, args.warmup),
            "train_steps": agent.train_info["total_steps"],
            "config": {k: v for k, v in config.__dict__.items()},
        }
    if optimum is not None:
        for entry in policies.values():
            entry["gap_to_optimal_pct"] = round(100 * (entry["cost_per_period"] / optimum - 1), 2)
    return {
        "instance": {
            "mode": args.mode,
            "demand": args.demand,
            "mean": args.mean,
            "holding": args.holding,
            "penalty": args.penalty,
            "lead_time": args.lead_time,
            "fixed_order": 0.0,
            "purchase": 0.0,
        },
        "evaluation": {
            "seeds": args.seeds,
            "eval_periods": args.eval_periods,
            "warmup": args.warmup,
            "train_paths": args.train_paths,
            "train_periods": args.train_periods,
            "seed": args.seed,
        },
        "policies": policies,
        "timings": timings,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "command": "python -m bench.rl_inventory " + " ".join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
    }


def _parameters(name: str, entry: dict[str, Any]) -> str:
    if name == "optimal":
        sim = entry.get("simulated")
        return "DP gain" + (f"; simulated {sim['cost_per_period']:.4f} {sim['ci95']}" if sim else "")
    if name == "rl":
        return f"PPO, {entry.get('train_steps', 0)} steps"
    return ", ".join(f"{k}={v:g}" for k, v in entry.get("parameters", {}).items())


def markdown_table(report: dict[str, Any]) -> str:
    """The policy table as bench/RESULTS.md shows it (a test holds the two together)."""
    lines = [
        "| policy | cost per period | 95 % CI | gap to DP gain | fill rate | avg stock | parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["policies"].items():
        gap = entry.get("gap_to_optimal_pct")
        shown = entry.get("simulated", entry) if name == "optimal" else entry
        lo, hi = entry["ci95"]
        lines.append(
            f"| {name} | {entry['cost_per_period']:.4f} | [{lo:.4f}, {hi:.4f}] | "
            + ("" if gap is None else f"{gap:+.2f} %")
            + f" | {shown.get('fill_rate', float('nan')):.3f} | {shown.get('average_stock', float('nan')):.2f} | "
            f"{_parameters(name, entry)} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["lost_sales", "backorder"], required=True)
    parser.add_argument("--demand", choices=["poisson"], default="poisson")
    parser.add_argument("--mean", type=float, required=True)
    parser.add_argument("--holding", type=float, required=True)
    parser.add_argument("--penalty", type=float, required=True)
    parser.add_argument("--lead-time", type=int, required=True)
    parser.add_argument("--seeds", type=int, default=10, help="evaluation paths (independent replications)")
    parser.add_argument("--eval-periods", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--train-paths", type=int, default=64)
    parser.add_argument("--train-periods", type=int, default=1000)
    parser.add_argument("--train-steps", type=int, default=0, help="PPO environment steps; 0 skips the agent")
    parser.add_argument("--episode-length", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--target-range",
        type=float,
        default=2.0,
        help="the agent's action spans [1/r, r] x the critical-fractile level (2: finer resolution for a "
        "specialist on i.i.d. demand; the catalogue agent uses 4 for seasonal peaks)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mean <= 0 or args.holding < 0 or args.penalty < 0 or args.lead_time < 0 or args.seeds < 2:
        parser.error("need --mean > 0, --holding/--penalty/--lead-time >= 0 and --seeds >= 2")
    if args.warmup >= args.eval_periods or args.warmup >= args.train_periods:
        parser.error("--warmup must be shorter than --eval-periods and --train-periods")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    report = run(args)
    write_report(args.out, report)
    print(markdown_table(report))


if __name__ == "__main__":
    main()
