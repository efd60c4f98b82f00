"""Order recommendations: tune the classical policies, train the RL agent, judge both, write ``stock_orders``.

The step reads what ingest and classify left in the run folder: the weekly demand, the weekly
inventory (its ``censored`` weeks are imputed before anything trains on them: censored sales are
a lower bound of demand, not demand), the products table (costs, lead time, minimum order) and
the demand patterns. :mod:`rl_agent.catalogue` then

1. tunes base-stock, (s,S) and capped base-stock per SKU on the weeks before the held-out year;
2. trains one PPO agent on a seeded sample of the catalogue (it serves every SKU: its
   observation is normalised by each product's mean demand, and its action is centred on each
   SKU's tuned base-stock level, which ``classical.json`` keeps beside the agent for the service);
3. evaluates every policy on the held-out year (``rl_holdout_weeks``) over ``rl_eval_seeds``
   replications, per SKU and per demand pattern, and picks per pattern the agent where its mean
   cost is not above the best classical policy's, else that classical policy;
4. recommends an order per SKU from its latest inventory week (on hand at week end; open orders
   are not in the source, so they are taken as none, which the ``reason`` says).

The agent is registered as ``stockml-rl-agent`` (challenger) and moved to champion only when its
held-out cost over the catalogue is not above the best classical policy's: the same guardrail
idea as the router's, judged on cost instead of MASE. ``stock_orders`` is replaced per output key
like every output, so re-running the step over the same data replaces its rows.

The agent's observation carries a forecast made the week before each week (``rl_forecasts="rolling"``,
the default): :func:`training.forecasting.rolling.rolling_forecasts` runs the zoo's fast local members
(SES, CrostonSBA, TSB) at every weekly origin, keeps per SKU the one with the lowest recent one-step
error, and bounds it with a rolling conformal 80 % interval. Not the router's own backtest: that covers
only its last windows (``backtest_windows`` x ``horizon`` = the last 39 weeks), so the training weeks
would have none, and re-running the full router at ~150 origins costs hours. The same definition (mean
over the next ``L + R`` weeks, next week's 80 % bound) is what the service computes from the router's
forecast (:func:`rl_agent.features.forecast_inputs`). The latest origin (the week after the data) gives
the forecast the recommendations are made with. ``rl_forecasts="none"`` leaves the observation's
no-forecast values (mean demand, ``Z80 * cv`` width).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from rl_agent.catalogue import (
    Catalogue,
    CatalogueConfig,
    anchor_on_tuned,
    evaluate_policies,
    prepare_catalogue,
    recommend,
    train_catalogue_agent,
    tune_classical,
)
from stockml.run import Progress, Run, Stages, no_stages, noop_progress
from stockml.steps.ingest import load_demand, load_inventory
from stockml.steps.registry import configure_mlflow, provenance_tags
from training.forecasting.rolling import horizons_from_products, rolling_forecasts
from training.registry import agent_registry

log = logging.getLogger("stockml.pipeline")

ORDER_COLUMNS = ["sku", "as_of_week", "on_hand", "order_qty", "policy", "expected_cost_per_period", "reason"]


def catalogue_config(run: Run) -> CatalogueConfig:
    s = run.settings
    return CatalogueConfig(
        mode=s.rl_mode,
        holding_rate_per_year=s.holding_rate_per_year,
        penalty_per_unit=s.shortage_cost_per_unit,
        holdout_weeks=s.rl_holdout_weeks,
        seed=s.rl_seed,
    )


class NoUsableProduct(ValueError):
    """No SKU has the history the policies need (a held-out year plus training weeks)."""


def load_catalogue(run: Run) -> tuple[Catalogue, pd.DataFrame, pd.DataFrame | None]:
    """The catalogue of per-product problems, the weekly inventory it starts from and the per-origin
    forecasts its observation carries (None with ``rl_forecasts="none"``)."""
    demand, products = load_demand(run)
    config = catalogue_config(run)
    need = config.holdout_weeks + config.min_train_weeks
    longest = int(demand.groupby("unique_id").size().max()) if len(demand) else 0
    if longest < need:
        raise NoUsableProduct(
            f"the longest history has {longest} weeks; the policies need {need} "
            f"({config.holdout_weeks} held out + {config.min_train_weeks} to tune on: lower STOCKML_RL_HOLDOUT_WEEKS)"
        )
    inventory = load_inventory(run)
    merged = demand.merge(inventory[["unique_id", "ds", "censored"]], on=["unique_id", "ds"], how="left")
    patterns = None
    if run.layout.classes.exists():
        classes = pd.read_parquet(run.layout.classes)
        patterns = (
            classes.set_index("sku")["pattern"].astype(str).to_dict()
            if "sku" in classes
            else (classes["pattern"].astype(str).to_dict())
        )
    forecasts = None
    if run.settings.rl_forecasts == "rolling":
        horizons = horizons_from_products(products, config.review_period)
        # One process: the members are numba kernels over all SKUs (about a second for 1,000 SKUs).
        forecasts = rolling_forecasts(demand, horizons, n_jobs=1)
    catalogue = prepare_catalogue(merged, products, forecasts, patterns=patterns, config=config)
    return catalogue, inventory, forecasts


def latest_forecasts(forecasts: pd.DataFrame | None) -> pd.DataFrame:
    """Per SKU the forecast of its latest origin (the week after the data): ``sku, forecast_mean,
    forecast_upper`` as :func:`rl_agent.catalogue.recommend` reads them (empty without forecasts)."""
    if forecasts is None or forecasts.empty:
        return pd.DataFrame(columns=["sku", "forecast_mean", "forecast_upper"])
    last = forecasts.sort_values("ds").groupby("unique_id", sort=True).tail(1)
    return pd.DataFrame(
        {"sku": last["unique_id"].astype(str).to_numpy(), "forecast_mean": last["yhat"].to_numpy(float),
         "forecast_upper": last["hi80"].to_numpy(float)}
    )  # fmt: skip


def current_state(inventory: pd.DataFrame) -> pd.DataFrame:
    """Each SKU's latest inventory week: ``sku, as_of_week, on_hand`` (an unknown count is taken as 0)."""
    last = inventory.sort_values("ds").groupby("unique_id", sort=True).tail(1)
    return pd.DataFrame(
        {
            "sku": last["unique_id"].astype(str).to_numpy(),
            "as_of_week": pd.to_datetime(last["ds"]).dt.date.to_numpy(),
            "on_hand": last["on_hand"].fillna(0.0).clip(lower=0).to_numpy(float),
        }
    )


def orders_step(run: Run, progress: Progress = noop_progress, stages: Stages = no_stages) -> dict:
    """Tune, train, evaluate, register the agent, write ``stock_orders``; returns the step's report.
    ``stages`` is entered around each part (see :func:`stockml.pipeline.run_pipeline`)."""
    s = run.settings
    progress("orders", 0, 4)
    try:
        began = time.perf_counter()
        with stages("orders: rolling forecasts"):  # the agent's observations, every weekly origin
            catalogue, inventory, forecasts = load_catalogue(run)
        prepare_seconds = round(time.perf_counter() - began, 2)
    except NoUsableProduct as exc:
        log.warning("orders skipped: %s", exc)
        report = {"status": "skipped", "reason": str(exc)}
        run.save_json(run.layout.orders, report)
        return report
    with stages("orders: tune classical"):
        tuned = tune_classical(catalogue)
        anchor_on_tuned(catalogue, tuned)
    progress("orders", 1, 4)
    agent = None
    if s.rl_train_steps > 0:
        with stages("orders: train RL agent"):
            agent = train_catalogue_agent(catalogue, s.rl_train_steps, sample_size=s.rl_sample_skus)
    progress("orders", 2, 4)
    with stages("orders: evaluate policies"):
        evaluation = evaluate_policies(catalogue, tuned, agent, seeds=s.rl_eval_seeds)
    evaluation.per_product.to_csv(run.layout.policy_evaluation, index=False)
    evaluation.per_pattern.to_csv(run.layout.policy_patterns, index=False)
    folder = run.layout.rl_agent_model
    folder.mkdir(parents=True, exist_ok=True)
    if agent is not None:
        agent.save(folder)
    (folder / "classical.json").write_text(
        json.dumps({sku: {p: t.parameters for p, t in by.items()} for sku, by in tuned.items()}, indent=1)
    )
    (folder / "pattern_policy.json").write_text(json.dumps(evaluation.pattern_policy, indent=1))
    progress("orders", 3, 4)
    costs = agent_registry.catalogue_costs(evaluation.per_product)
    registered = decision = None
    if agent is not None and s.rl_register:
        registered, decision = _register(run, folder, costs)
    with stages("orders: recommend"):  # inference: an order per SKU, written to stock_orders
        state = current_state(inventory)
        state = state.merge(latest_forecasts(forecasts), on="sku", how="left")
        recs = recommend(
            catalogue, state[["sku", "on_hand", "forecast_mean", "forecast_upper"]], tuned, agent, evaluation
        )
        orders = state.merge(recs, on="sku", how="left")
        orders["reason"] = orders["reason"].fillna("") + "; open orders unknown to the source: taken as none"
        version = registered.version if registered is not None else None
        orders["model_version"] = [version if p == "rl" else None for p in orders["policy"]]
        written = run.write("stock_orders", orders[[*ORDER_COLUMNS, "model_version"]])
    report = {
        "status": "written",
        "skus": len(orders),
        "with_order": int((orders["order_qty"].fillna(0) > 0).sum()),
        "skipped": dict(list(catalogue.skipped.items())[:20]),
        "n_skipped": len(catalogue.skipped),
        "pattern_policy": evaluation.pattern_policy,
        "mean_cost_per_period": costs,
        "agent": None if agent is None else agent.train_info,
        "registered": None if registered is None else asdict(registered),
        "promotion": None if decision is None else asdict(decision),
        "rows_written": written,
        "mode": s.rl_mode,
        "forecasts": {
            "kind": s.rl_forecasts,
            "origins": 0 if forecasts is None else len(forecasts),
            "methods": {} if forecasts is None else forecasts["method"].value_counts().to_dict(),
            "prepare_seconds": prepare_seconds,
        },
    }
    run.save_json(run.layout.orders, report)
    progress("orders", 4, 4)
    log.info("orders: %d SKUs, policy per pattern %s", len(orders), evaluation.pattern_policy)
    return report


def _register(run: Run, folder: Path, costs: dict[str, float]) -> tuple:
    s = run.settings
    agent_registry.configure(s.tracking_uri, s.artifact_root)
    try:
        registered = agent_registry.log_agent(
            folder,
            costs=costs,
            tags={**provenance_tags(s), "pipeline_run_id": run.run_id, "mode": s.rl_mode},
            files=[run.layout.policy_patterns, run.layout.policy_evaluation],
            run_name=f"rl-agent-{run.run_id}",
        )
        decision = agent_registry.promote_agent(registered.version, who=s.actor)
    finally:
        configure_mlflow(s)
    return registered, decision


def read_orders(run: Run) -> pd.DataFrame | None:
    """The newest ``stock_orders`` rows in the source (the latest data cut-off), or ``None`` when none."""
    from training.data.store import latest_output

    return latest_output(run.hook(), "stock_orders", run.settings.source_schema)
