"""The catalogue-level API: from the platform's frames to tuned policies, a trained agent, an evaluation
on held-out demand and order recommendations.

Inputs are the platform's contracts: weekly demand ``unique_id, ds, y`` (optionally a boolean
``censored`` column, True where a stock-out censored sales), the products table ``sku, unit_cost,
unit_price, lead_time_weeks, min_order_qty`` and, optionally, per-origin forecasts ``unique_id, ds, yhat,
hi80``: the row at ``ds`` is the forecast made at the start of week ``ds`` from the weeks before it,
``yhat`` the mean demand per week over weeks ``ds .. ds + L + R - 1`` and ``hi80`` the 80 % upper bound of
week ``ds`` (:func:`training.forecasting.rolling.rolling_forecasts` makes them for every week; the
agent's observation reads them as they are, see :mod:`rl_agent.features`). Weeks without a forecast
(before the first origin) get the no-forecast values: the mean demand and a ``Z80 * cv`` width. Censored
weeks are not demand: their sales are a lower bound, so they are imputed as the larger of the sales and
the mean of the uncensored weeks around them (a centred 9-week window), before anything trains on them.

After tuning, :func:`anchor_on_tuned` centres each product's agent action on its tuned base-stock
level. The last ``holdout_weeks`` weeks of each product are held out: the classical policies are tuned and the
agent trained on the weeks before, and :func:`evaluate_policies` scores every policy on the held-out
weeks (or on a separately given uncensored held-out demand, such as the demo generator's truth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from rl_agent.agent import AgentConfig, RLAgent
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec, Mode, feasible_order
from rl_agent.env import ProductCase
from rl_agent.features import MAX_LEAD, Z80, DemandProfile
from rl_agent.policies import BaseStock, CappedBaseStock, MinMax, Policy, Situation
from rl_agent.simulate import mean_ci95, simulate
from rl_agent.tuning import TUNERS, Tuned, tune_many

CLASSICAL = tuple(TUNERS)
PRODUCT_COLUMNS = ("sku", "unit_cost", "unit_price", "lead_time_weeks", "min_order_qty")
IMPUTE_WINDOW = 9


@dataclass(frozen=True)
class CatalogueConfig:
    """Cost and evaluation settings shared by the catalogue (per-product data comes from the frames)."""

    mode: Mode = "lost_sales"
    holding_rate_per_year: float = 0.25
    penalty_per_unit: float | None = None  # None: the margin unit_price - unit_cost
    fixed_order_cost: float = 0.0
    purchase_cost: bool = False
    review_period: int = 1
    holdout_weeks: int = 52
    min_train_weeks: int = 26
    train_paths: int = 16
    train_window: int = 104
    seed: int = 0


@dataclass
class ProductData:
    """One product ready for the policies: its problem, training demand and held-out demand."""

    sku: str
    spec: InventorySpec
    profile: DemandProfile
    train: np.ndarray
    holdout: np.ndarray
    train_forecast: tuple[np.ndarray, np.ndarray] | None = None
    holdout_forecast: tuple[np.ndarray, np.ndarray] | None = None
    pattern: str | None = None

    def case(self) -> ProductCase:
        mean, upper = self.train_forecast if self.train_forecast is not None else (None, None)
        return ProductCase(
            self.spec, self.profile, history=self.train, forecast_mean=mean, forecast_upper=upper, name=self.sku
        )


@dataclass
class Catalogue:
    products: dict[str, ProductData]
    config: CatalogueConfig
    skipped: dict[str, str] = field(default_factory=dict)  # sku -> why it has no policy


def impute_censored(demand: pd.DataFrame) -> pd.Series:
    """Demand with censored weeks replaced by max(sales, local mean of uncensored weeks)."""
    if "censored" not in demand.columns:
        return demand["y"].astype(float)
    censored = demand["censored"].fillna(False).astype(bool)
    clean = demand["y"].astype(float).where(~censored)
    local = clean.groupby(demand["unique_id"]).transform(
        lambda s: s.rolling(IMPUTE_WINDOW, center=True, min_periods=1).mean()
    )
    overall = clean.groupby(demand["unique_id"]).transform("mean")
    fill = local.fillna(overall).fillna(demand["y"].astype(float))
    return demand["y"].astype(float).where(~censored, np.maximum(demand["y"].astype(float), fill))


def _check_frames(demand: pd.DataFrame, products: pd.DataFrame, forecasts: pd.DataFrame | None) -> None:
    for frame, name, columns in (
        (demand, "demand", ("unique_id", "ds", "y")),
        (products, "products", PRODUCT_COLUMNS),
        *(((forecasts, "forecasts", ("unique_id", "ds", "yhat", "hi80")),) if forecasts is not None else ()),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} frame lacks columns {missing}")
    if (demand["y"] < 0).any() or demand["y"].isna().any():
        raise ValueError("demand y must be >= 0 and not missing")
    if demand.duplicated(["unique_id", "ds"]).any():
        raise ValueError("demand has duplicated (unique_id, ds) rows")


def prepare_catalogue(
    demand: pd.DataFrame,
    products: pd.DataFrame,
    forecasts: pd.DataFrame | None = None,
    patterns: Mapping[str, str] | None = None,
    holdout: pd.DataFrame | None = None,
    config: CatalogueConfig | None = None,
) -> Catalogue:
    """Per-product problems from the frames. ``patterns`` maps sku -> demand pattern (smooth, erratic,
    intermittent, lumpy); ``holdout`` (``unique_id, ds, y``) replaces the held-out weeks' demand where
    given (e.g. the generator's uncensored demand)."""
    config = config or CatalogueConfig()
    _check_frames(demand, products, forecasts)
    demand = demand.sort_values(["unique_id", "ds"], ignore_index=True)
    demand = demand.assign(y=impute_censored(demand))
    table = products.drop_duplicates("sku").set_index("sku")
    fc = forecasts.set_index(["unique_id", "ds"])[["yhat", "hi80"]] if forecasts is not None else None
    true_holdout = holdout.set_index(["unique_id", "ds"])["y"] if holdout is not None else None
    catalogue = Catalogue({}, config)
    for sku, rows in demand.groupby("unique_id", sort=True):
        sku = str(sku)
        if sku not in table.index:
            catalogue.skipped[sku] = "not in the products table"
            continue
        if len(rows) < config.holdout_weeks + config.min_train_weeks:
            catalogue.skipped[sku] = (
                f"{len(rows)} weeks of demand, need {config.holdout_weeks + config.min_train_weeks}"
            )
            continue
        product = table.loc[sku]
        lead = int(product["lead_time_weeks"])
        if not 0 <= lead <= MAX_LEAD:
            catalogue.skipped[sku] = f"lead time {lead} outside 0..{MAX_LEAD} weeks"
            continue
        y = rows["y"].to_numpy(float)
        cut = len(y) - config.holdout_weeks
        train, held = y[:cut], y[cut:]
        if true_holdout is not None:
            keys = list(zip([sku] * (len(y) - cut), rows["ds"].iloc[cut:], strict=True))
            held = (
                true_holdout.reindex(keys)
                .fillna(pd.Series(held, index=pd.MultiIndex.from_tuples(keys)))
                .to_numpy(float)
            )
        if train.sum() <= 0:
            catalogue.skipped[sku] = "no demand in the training weeks"
            continue
        costs = CostConfig.from_product(
            float(product["unit_cost"]),
            float(product["unit_price"]),
            config.holding_rate_per_year,
            config.penalty_per_unit,
            config.fixed_order_cost,
            config.purchase_cost,
        )
        moq = int(product["min_order_qty"])
        mean = max(float(train.mean()), 1e-3)
        spec = InventorySpec(
            costs,
            lead_time=lead,
            mode=config.mode,
            review_period=config.review_period,
            min_order_qty=moq,
            max_order_qty=max(moq, math.ceil(20 * mean * config.review_period) + 1),
        )
        profile = DemandProfile.of(train, spec)
        train_fc = holdout_fc = None
        if fc is not None:
            keys = pd.MultiIndex.from_arrays([[sku] * len(y), rows["ds"].to_numpy()])
            aligned = fc.reindex(keys)
            missing = aligned["yhat"].isna().to_numpy()
            mean = aligned["yhat"].fillna(profile.mean).clip(lower=0).to_numpy(float)
            # Without a bound, the width the observation has without forecasts (Z80 * cv, in units of mu).
            fallback = mean + Z80 * profile.cv * profile.mean
            bound = aligned["hi80"].to_numpy(float)
            upper = np.maximum(np.where(np.isnan(bound) | missing, fallback, bound), mean)
            train_fc, holdout_fc = (mean[:cut], upper[:cut]), (mean[cut:], upper[cut:])
        pattern = None if patterns is None else patterns.get(sku)
        catalogue.products[sku] = ProductData(sku, spec, profile, train, held, train_fc, holdout_fc, pattern)
    if not catalogue.products:
        raise ValueError(f"no product is usable: {dict(list(catalogue.skipped.items())[:5])}")
    return catalogue


def training_paths(product: ProductData, paths: int, window: int, seed: int) -> np.ndarray:
    """Circular windows of the training weeks at random offsets: the episodes the policies tune on."""
    rng = np.random.default_rng(seed)
    n = len(product.train)
    offsets = rng.integers(0, n, paths)
    index = (offsets[:, None] + np.arange(window)[None, :]) % n
    return product.train[index]


def tune_classical(catalogue: Catalogue, policies: tuple[str, ...] = CLASSICAL) -> dict[str, dict[str, Tuned]]:
    """Every classical policy tuned per product on its training paths (common random numbers), all
    products of a policy in one batched search."""
    config = catalogue.config
    skus = sorted(catalogue.products)
    products = [catalogue.products[s] for s in skus]
    demands = [
        training_paths(p, config.train_paths, config.train_window, config.seed + i) for i, p in enumerate(products)
    ]
    warmup = min(MAX_LEAD + 4, config.train_window // 4)
    specs = [p.spec for p in products]
    by_policy = {name: tune_many(name, specs, demands, warmup) for name in policies}
    return {sku: {name: by_policy[name][i] for name in policies} for i, sku in enumerate(skus)}


ANCHOR_POLICY = "base_stock"


def anchor_on_tuned(catalogue: Catalogue, tuned: dict[str, dict[str, Tuned]], policy: str = ANCHOR_POLICY) -> int:
    """Centre every tuned product's action scale on its tuned ``policy`` level (``a = 0`` orders up to it).

    Why: the default centre, the critical fractile of the training demand over ``L + R`` weeks, ignores
    the demand's order in time; for seasonal and lumpy products the level that simulates best on the
    product's own paths is often far from it. Starting the agent at the tuned level means it learns the
    *corrections* to base-stock (state-dependent targets, lost-sales effects) instead of the level
    itself (measured in bench/RESULTS.md: on the 1,000-SKU demo catalogue it turns the smooth and lumpy
    patterns from losses into wins). Call it after :func:`tune_classical` and before training, and use
    the same levels when serving (``classical.json`` beside the registered agent). Returns how many
    products were anchored."""
    done = 0
    for sku, product in catalogue.products.items():
        parameters = tuned.get(sku, {}).get(policy)
        if parameters is None or "level" not in parameters.parameters:
            continue
        product.profile = product.profile.anchored(parameters.parameters["level"], product.spec)
        done += 1
    return done


def train_catalogue_agent(
    catalogue: Catalogue,
    total_steps: int,
    sample_size: int | None = None,
    config: AgentConfig | None = None,
) -> RLAgent:
    """PPO on (a seeded sample of) the catalogue's products, their training weeks and forecasts."""
    skus = sorted(catalogue.products)
    if sample_size is not None and sample_size < len(skus):
        rng = np.random.default_rng(catalogue.config.seed)
        skus = sorted(rng.choice(skus, sample_size, replace=False).tolist())
    cases = [catalogue.products[s].case() for s in skus]
    agent = RLAgent.train(cases, total_steps, config or AgentConfig(seed=catalogue.config.seed))
    agent.train_info["trained_skus"] = len(skus)
    return agent


def stack_policy(name: str, parameters: list[dict[str, float]]) -> Policy:
    """One batched policy from per-row tuned parameters."""
    column = {k: np.array([p[k] for p in parameters], dtype=float) for k in parameters[0]}
    if name == "base_stock":
        return BaseStock(column["level"])
    if name == "capped_base_stock":
        return CappedBaseStock(column["level"], column["cap"])
    if name == "s_S":
        return MinMax(column["s"], column["S"])
    raise ValueError(f"unknown classical policy {name!r}")


@dataclass
class Evaluation:
    """Held-out results: one row per (sku, policy) with means and 95 % intervals over seeds, the
    per-pattern table and the policy each pattern's recommendations come from."""

    per_product: pd.DataFrame
    per_pattern: pd.DataFrame
    pattern_policy: dict[str, str]
    seeds: int


def _start_states(params: BatchParams, mean: np.ndarray, rng: np.random.Generator) -> BatchState:
    """A plausible state to start the held-out year from: some stock, the pipeline at mean demand."""
    state = BatchState.start(params)
    state.on_hand[:] = np.rint(rng.uniform(0.5, 1.5, params.n) * mean * (params.review + 1))
    cols = np.arange(state.pipeline.shape[1])[None, :]
    state.pipeline[:] = np.where(cols < (params.lead - 1)[:, None], np.rint(mean)[:, None], 0.0)
    return state


def evaluate_policies(
    catalogue: Catalogue,
    tuned: dict[str, dict[str, Tuned]],
    agent: RLAgent | None = None,
    seeds: int = 10,
) -> Evaluation:
    """Every policy on every product's held-out weeks, ``seeds`` replications each.

    A seed rotates the held-out year circularly (the same weeks, another start week, forecasts rotated
    with them) and draws the starting stock; all policies see the same seeds (common random numbers).
    Totals are over the held-out weeks."""
    if seeds < 2:
        raise ValueError("need at least 2 seeds for an interval")
    skus = sorted(s for s in catalogue.products if s in tuned)
    if not skus:
        raise ValueError("no tuned product to evaluate")
    products = [catalogue.products[s] for s in skus]
    weeks = catalogue.config.holdout_weeks
    rng = np.random.default_rng(catalogue.config.seed + 1)
    shifts = rng.integers(0, weeks, (len(skus), seeds))
    index = (shifts[:, :, None] + np.arange(weeks)[None, None, :]) % weeks
    rows = np.repeat(np.arange(len(skus)), seeds)
    demand = np.stack([p.holdout for p in products])[rows[:, None], index.reshape(-1, weeks)]
    has_fc = all(p.holdout_forecast is not None for p in products)
    fmean = fupper = None
    if has_fc:
        fmean = np.stack([p.holdout_forecast[0] for p in products])[rows[:, None], index.reshape(-1, weeks)]
        fupper = np.stack([p.holdout_forecast[1] for p in products])[rows[:, None], index.reshape(-1, weeks)]
    params = BatchParams.from_specs([products[r].spec for r in rows])
    means = np.array([products[r].profile.mean for r in rows])
    start = _start_states(params, means, rng)
    candidates: dict[str, Policy] = {
        name: stack_policy(name, [tuned[skus[r]][name].parameters for r in rows]) for name in tuned[skus[0]]
    }
    if agent is not None:
        candidates["rl"] = agent.policy_for([products[r].profile for r in rows])
    records = []
    for name, policy in candidates.items():
        result = simulate(policy, params, demand, start, fmean, fupper)
        total = result.total_cost.reshape(len(skus), seeds)
        for i, sku in enumerate(skus):
            mean, lo, hi = mean_ci95(total[i])
            sl = slice(i * seeds, (i + 1) * seeds)
            records.append(
                {
                    "sku": sku,
                    "pattern": products[i].pattern,
                    "policy": name,
                    "total_cost": mean,
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "cost_per_period": mean / weeks,
                    "fill_rate": float(result.fill_rate[sl].mean()),
                    "cycle_service": float(result.cycle_service[sl].mean()),
                    "average_stock": float(result.average_stock[sl].mean()),
                    "seed_totals": total[i].tolist(),
                }
            )
    per_product = pd.DataFrame(records)
    per_pattern, choice = pattern_table(per_product, seeds)
    return Evaluation(per_product.drop(columns="seed_totals"), per_pattern, choice, seeds)


def pattern_table(per_product: pd.DataFrame, seeds: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per pattern and policy: the mean over products of the total held-out cost, with the 95 % interval
    over seeds (seed k's figure is the mean over the pattern's products of their seed-k totals), and the
    policy each pattern's recommendations come from: the agent unless its mean is above the best
    classical policy's, then that classical policy."""
    frame = per_product.assign(pattern=per_product["pattern"].fillna("all"))
    rows, choice = [], {}
    for pattern, group in frame.groupby("pattern", sort=True):
        for policy, g in group.groupby("policy", sort=False):
            by_seed = np.mean(np.stack(g["seed_totals"].to_numpy()), axis=0)
            mean, lo, hi = mean_ci95(by_seed)
            rows.append(
                {
                    "pattern": pattern,
                    "policy": policy,
                    "products": len(g),
                    "mean_total_cost": mean,
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "fill_rate": float(g["fill_rate"].mean()),
                    "cycle_service": float(g["cycle_service"].mean()),
                    "average_stock": float(g["average_stock"].mean()),
                }
            )
        table = pd.DataFrame([r for r in rows if r["pattern"] == pattern]).set_index("policy")
        classical = table.drop(index="rl", errors="ignore")["mean_total_cost"]
        best = str(classical.idxmin())
        agent_wins = "rl" in table.index and table.loc["rl", "mean_total_cost"] <= classical[best]
        choice[str(pattern)] = "rl" if agent_wins else best
    return pd.DataFrame(rows), choice


def recommend(
    catalogue: Catalogue,
    state: pd.DataFrame,
    tuned: dict[str, dict[str, Tuned]],
    agent: RLAgent | None = None,
    evaluation: Evaluation | None = None,
) -> pd.DataFrame:
    """Order recommendations per SKU for its current state.

    ``state`` has ``sku, on_hand`` and optionally ``open_orders`` (a list of quantities, next arrival
    first, at most ``L - 1`` of them) or ``on_order`` (the total, spread over the open slots), and
    ``forecast_mean`` / ``forecast_upper`` (the forecast made now: the mean per week over the next
    ``L + R`` weeks and the next week's 80 % bound, as :func:`rl_agent.features.forecast_inputs` makes
    them from a forecast's weekly points; the agent reads them as it did in training). The policy is the
    one chosen for the SKU's pattern by ``evaluation`` (the agent where it wins, else the best classical
    policy; the ``reason`` column says which), else the agent when given, else tuned base-stock.
    ``expected_cost_per_period`` is the policy's held-out mean cost for the SKU where evaluated, else
    its training cost.

    Batched: the SKUs that share a policy (and whether they have a forecast) are ordered for in one
    call of that policy, every row from its own parameters and state (the catalogue's recommendations
    cost one pass, not a simulation set-up per SKU)."""
    missing = [c for c in ("sku", "on_hand") if c not in state.columns]
    if missing:
        raise ValueError(f"the state frame lacks columns {missing}")
    skus = [str(s) for s in state["sku"]]
    known = np.array([s in catalogue.products and s in tuned for s in skus], dtype=bool)
    rows = np.flatnonzero(known)
    order_qty = np.full(len(skus), np.nan)
    expected = np.full(len(skus), np.nan)
    policy: list[str | None] = [None] * len(skus)
    reason = [None if k else catalogue.skipped.get(s, "unknown sku") for s, k in zip(skus, known, strict=True)]
    if len(rows):
        names = _fill_known(catalogue, state, tuned, agent, evaluation, skus, rows, order_qty, policy, reason)
        expected[rows] = _expected_costs(tuned, evaluation, [skus[i] for i in rows], names)
    return pd.DataFrame(
        {
            "sku": skus,
            "order_qty": [None if k is None else float(q) for k, q in zip(policy, order_qty, strict=True)],
            "policy": policy,
            "expected_cost_per_period": [None if np.isnan(e) else float(e) for e in expected],
            "reason": reason,
        }
    )


def _fill_known(
    catalogue: Catalogue,
    state: pd.DataFrame,
    tuned: dict[str, dict[str, Tuned]],
    agent: RLAgent | None,
    evaluation: Evaluation | None,
    skus: list[str],
    rows: np.ndarray,
    order_qty: np.ndarray,
    policy: list[str | None],
    reason: list[str | None],
) -> list[str]:
    """The orders, policies and reasons of the known SKUs (``rows`` of ``state``), written in place;
    returns the policy name per known SKU."""
    products = [catalogue.products[skus[i]] for i in rows]
    agent_evaluated = evaluation is not None and agent is not None and "rl" in set(evaluation.per_product["policy"])
    chosen = [_choose(p, tuned[p.sku], agent, evaluation, agent_evaluated) for p in products]
    names = [name for name, _ in chosen]
    for i, (name, why) in zip(rows, chosen, strict=True):
        policy[i], reason[i] = name, why
    params = BatchParams.from_specs([p.spec for p in products])
    current = BatchState.start(params, state["on_hand"].to_numpy(dtype=float)[rows])
    current.pipeline[:] = _open_orders(state.iloc[rows], np.maximum(params.lead - 1, 0), params.width)
    fmean, fupper = (
        pd.to_numeric(state[c], errors="coerce").to_numpy(dtype=float)[rows] if c in state.columns else None
        for c in ("forecast_mean", "forecast_upper")
    )
    has_mean = np.zeros(len(rows), bool) if fmean is None else ~np.isnan(fmean)
    has_upper = np.zeros(len(rows), bool) if fupper is None else ~np.isnan(fupper)
    groups = pd.DataFrame({"name": names, "mean": has_mean, "upper": has_upper}).groupby(
        ["name", "mean", "upper"], sort=False
    )
    for (name, with_mean, with_upper), index in groups.indices.items():
        sub_params = params.take(index)
        sub_state = BatchState(current.on_hand[index], current.pipeline[index], current.period[index])
        situation = Situation(
            sub_state,
            sub_params,
            fmean[index] if with_mean else None,
            fupper[index] if with_upper else None,
        )
        if name == "rl":
            wanted = agent.policy_for([products[j].profile for j in index]).order(situation)
        else:
            wanted = _batched_order([tuned[products[j].sku][name].policy for j in index], situation)
        order_qty[rows[index]] = feasible_order(sub_params, sub_state, wanted)
    return names


def _expected_costs(
    tuned: dict[str, dict[str, Tuned]], evaluation: Evaluation | None, skus: list[str], names: list[str]
) -> np.ndarray:
    """Each SKU's held-out mean cost under its policy where evaluated, else the policy's training cost."""
    out = np.full(len(skus), np.nan)
    if evaluation is not None:
        costs = evaluation.per_product.set_index(["sku", "policy"])["cost_per_period"]
        out = costs.reindex(pd.MultiIndex.from_arrays([skus, names])).to_numpy(dtype=float)
    for j in np.flatnonzero(np.isnan(out)):  # rarely any: products the evaluation did not cover
        t = tuned[skus[j]].get(names[j])
        out[j] = t.train_cost if t is not None else np.nan
    return out


def _batched_order(policies: list[Policy], situation: Situation) -> np.ndarray:
    """The orders of one row per policy: one call of a policy stacked from the rows' parameters when they
    are one classical family with a value per row, else each policy on its own row."""
    first = policies[0]
    if type(first) in (BaseStock, CappedBaseStock, MinMax) and all(type(p) is type(first) for p in policies):
        values = {
            f.name: [np.asarray(getattr(p, f.name), dtype=float).reshape(-1) for p in policies]
            for f in fields(first)
            if f.name != "name"
        }
        if all(len(v) == 1 for column in values.values() for v in column):
            return type(first)(**{k: np.concatenate(v) for k, v in values.items()}).order(situation)
    return np.concatenate([p.order(_one_row(situation, j)) for j, p in enumerate(policies)])


def _one_row(situation: Situation, j: int) -> Situation:
    s, keep = situation.state, [j]
    return Situation(
        BatchState(s.on_hand[keep], s.pipeline[keep], s.period[keep]),
        situation.params.take(np.array(keep)),
        None if situation.forecast_mean is None else situation.forecast_mean[keep],
        None if situation.forecast_upper is None else situation.forecast_upper[keep],
    )


def _open_orders(state: pd.DataFrame, slots: np.ndarray, width: int) -> np.ndarray:
    """The pipeline per row (``width`` columns): its ``open_orders`` list where given, else its
    ``on_order`` total spread evenly over its ``slots`` (lead time - 1) open slots, else none."""
    out = np.zeros((len(state), width))
    in_slot = np.arange(width)[None, :] < slots[:, None]
    if "on_order" in state.columns:
        total = pd.to_numeric(state["on_order"], errors="coerce").to_numpy(dtype=float)
        spread = np.divide(total, slots, out=np.zeros(len(state)), where=slots > 0)
        out = np.where(in_slot & ~np.isnan(total)[:, None], spread[:, None], 0.0)
    if "open_orders" in state.columns:
        for j, (sku, given) in enumerate(zip(state["sku"], state["open_orders"], strict=True)):
            if given is None or (np.isscalar(given) and pd.isna(given)):
                continue
            values = np.asarray(list(given), dtype=float)
            if len(values) > slots[j]:
                raise ValueError(f"{sku}: {len(values)} open orders, but lead time allows {slots[j]} in transit")
            out[j] = 0.0
            out[j, : len(values)] = values
    return out


def _choose(
    product: ProductData,
    tuned: dict[str, Tuned],
    agent: RLAgent | None,
    evaluation: Evaluation | None,
    agent_evaluated: bool,
) -> tuple[str, str]:
    if evaluation is not None:
        pattern = product.pattern or "all"
        choice = evaluation.pattern_policy.get(pattern)
        if choice == "rl" and agent is not None:
            return "rl", f"the agent has the lowest held-out cost for {pattern} products"
        if choice is not None and choice in tuned:
            if agent_evaluated:
                return choice, f"fallback: for {pattern} products {choice} had a lower held-out cost than the agent"
            return choice, f"{choice}: the best tuned classical policy for {pattern} products"
    if agent is not None:
        return "rl", "the agent (no evaluation given)"
    return "base_stock", "no agent: tuned base-stock"
