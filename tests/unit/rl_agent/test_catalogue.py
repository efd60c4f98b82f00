"""The catalogue API on the demo generator's data: censored weeks, tuning, evaluation with intervals,
the per-pattern fallback and recommendations from a current state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.rl_demo import demo_frames, markdown_table
from rl_agent.agent import AgentConfig
from rl_agent.catalogue import (
    CatalogueConfig,
    anchor_on_tuned,
    evaluate_policies,
    impute_censored,
    prepare_catalogue,
    recommend,
    train_catalogue_agent,
    tune_classical,
)


@pytest.fixture(scope="module")
def setup():
    weekly, products, patterns, _ = demo_frames(12, 130, 5)
    catalogue = prepare_catalogue(weekly, products, patterns=patterns, config=CatalogueConfig(train_paths=4))
    tuned = tune_classical(catalogue)
    assert anchor_on_tuned(catalogue, tuned) == len(catalogue.products)  # as the pipeline trains
    agent = train_catalogue_agent(catalogue, 512, 6, AgentConfig(n_envs=8, n_steps=32, batch_size=64, n_epochs=1))
    return catalogue, tuned, agent


def test_censored_weeks_are_imputed_not_taken_as_demand():
    frame = pd.DataFrame(
        {
            "unique_id": ["a"] * 5,
            "ds": pd.date_range("2026-01-05", periods=5, freq="W-MON"),
            "y": [10.0, 10.0, 1.0, 10.0, 10.0],
            "censored": [False, False, True, False, False],
        }
    )
    assert impute_censored(frame).tolist() == [10, 10, 10, 10, 10]
    assert impute_censored(frame.drop(columns="censored")).tolist() == [10, 10, 1, 10, 10]


def test_evaluation_has_every_policy_with_intervals_and_a_choice_per_pattern(setup):
    catalogue, tuned, agent = setup
    evaluation = evaluate_policies(catalogue, tuned, agent, seeds=10)
    per = evaluation.per_product
    assert set(per["policy"]) == {"base_stock", "capped_base_stock", "s_S", "rl"}
    assert len(per) == 4 * len(catalogue.products)
    assert (per["ci95_lo"] <= per["total_cost"]).all() and (per["total_cost"] <= per["ci95_hi"]).all()
    assert per["fill_rate"].between(0, 1).all() and per["cycle_service"].between(0, 1).all()
    table = evaluation.per_pattern.set_index(["pattern", "policy"])["mean_total_cost"]
    for pattern, choice in evaluation.pattern_policy.items():
        costs = table.loc[pattern]
        classical = costs.drop("rl")
        # The agent only where its mean is not above the best classical policy's; else that policy.
        assert choice == ("rl" if costs["rl"] <= classical.min() else classical.idxmin())


def test_recommendations_follow_the_pattern_choice_and_say_why(setup):
    catalogue, tuned, agent = setup
    evaluation = evaluate_policies(catalogue, tuned, agent, seeds=3)
    skus = sorted(catalogue.products)
    state = pd.DataFrame({"sku": [*skus, "NOPE"], "on_hand": [0.0] * len(skus) + [1.0]})
    out = recommend(catalogue, state, tuned, agent, evaluation).set_index("sku")
    for sku in skus:
        pattern = catalogue.products[sku].pattern
        assert out.loc[sku, "policy"] == evaluation.pattern_policy[pattern]
        assert out.loc[sku, "order_qty"] >= 0 and np.isfinite(out.loc[sku, "expected_cost_per_period"])
        assert pattern in out.loc[sku, "reason"]
    assert pd.isna(out.loc["NOPE", "order_qty"]) and "unknown" in out.loc["NOPE", "reason"]


def test_recommended_base_stock_order_fills_the_gap_to_its_level(setup):
    catalogue, tuned, _ = setup
    sku = sorted(catalogue.products)[0]
    level = tuned[sku]["base_stock"].parameters["level"]
    product = catalogue.products[sku]
    out = recommend(catalogue, pd.DataFrame({"sku": [sku], "on_hand": [0.0]}), tuned)
    assert out.loc[0, "policy"] == "base_stock"
    assert out.loc[0, "order_qty"] == min(
        max(level, product.spec.min_order_qty if level > 0 else 0), product.spec.max_order_qty
    )


def test_bad_frames_get_clear_errors():
    weekly, products, _, _ = demo_frames(3, 100, 1)
    with pytest.raises(ValueError, match="lacks columns"):
        prepare_catalogue(weekly.drop(columns="y"), products)
    with pytest.raises(ValueError, match="y must be"):
        prepare_catalogue(weekly.assign(y=-1.0), products)


@pytest.mark.parametrize("name", ["rl_demo_200", "rl_demo_1000", "rl_demo_1000_no_forecasts"])
def test_results_doc_tables_are_the_json_they_quote(name):
    # Bug caught: a per-pattern figure typed or rounded by hand, or a table left from an earlier run.
    root = Path(__file__).resolve().parents[3]
    report = json.loads((root / "bench" / "results" / f"{name}.json").read_text())
    assert markdown_table(report) in (root / "bench" / "RESULTS.md").read_text()


def test_anchoring_centres_the_action_on_the_tuned_base_stock_level(setup):
    # Bug caught: the agent's a = 0 drifting off the level it was centred on (the serving path rebuilds it).
    from rl_agent.dynamics import BatchParams
    from rl_agent.features import profile_arrays, target_from_action

    catalogue, tuned, _ = setup
    for sku, product in catalogue.products.items():
        level = tuned[sku]["base_stock"].parameters["level"]
        params = BatchParams.from_specs([product.spec])
        target = target_from_action(np.zeros(1), params, profile_arrays([product.profile]))[0]
        assert target == pytest.approx(max(level, product.profile.mean)), sku


def _terms(row: pd.Series):
    from rl_agent.advice import ProductTerms

    return ProductTerms(
        unit_cost=float(row["unit_cost"]),
        unit_price=float(row["unit_price"]),
        lead_time=int(row["lead_time_weeks"]),
        min_order_qty=float(row["min_order_qty"]),
    )


def test_the_service_path_orders_what_the_catalogue_path_orders(setup):
    """rl_agent.advice (what /recommend_order calls with a request's history and terms) builds the same
    problem and profile as the catalogue, centred on the SKU's tuned level as the registered
    ``classical.json`` gives it, so for a catalogue product's training weeks both order the same."""
    from rl_agent.advice import agent_advice

    catalogue, tuned, agent = setup
    table = demo_frames(12, 130, 5)[1].set_index("sku")
    for sku, product in list(catalogue.products.items())[:4]:
        terms = _terms(table.loc[sku])
        on_hand = float(round(product.profile.mean))
        level = tuned[sku]["base_stock"].parameters["level"]
        served = agent_advice(agent, product.train, on_hand, terms, level=level, with_cost=False).order_qty
        state = pd.DataFrame({"sku": [sku], "on_hand": [on_hand]})
        direct = recommend(catalogue, state, {sku: {**tuned[sku]}}, agent)
        assert direct["policy"].iloc[0] == "rl"
        assert served == direct["order_qty"].iloc[0], sku


@pytest.fixture(scope="module")
def forecast_setup(setup):
    """The same catalogue with the rolling-origin forecasts the pipeline gives it, anchored as it trains."""
    from training.forecasting.rolling import horizons_from_products, rolling_forecasts

    weekly, products, patterns, _ = demo_frames(12, 130, 5)
    forecasts = rolling_forecasts(weekly, horizons_from_products(products))
    catalogue = prepare_catalogue(weekly, products, forecasts, patterns, config=CatalogueConfig(train_paths=4))
    anchor_on_tuned(catalogue, setup[1])
    return catalogue, forecasts, weekly, products


def test_each_week_carries_the_forecast_made_at_its_origin_and_the_fallback_before_the_first(forecast_setup):
    # Bug caught: forecasts shifted by a week against the demand (the env reads entry t at week t's decision).
    from rl_agent.features import Z80

    catalogue, forecasts, weekly, _ = forecast_setup
    by_key = forecasts.set_index(["unique_id", "ds"])
    for sku, product in catalogue.products.items():
        weeks = weekly[weekly["unique_id"] == sku].sort_values("ds")["ds"].to_numpy()
        mean = np.concatenate([product.train_forecast[0], product.holdout_forecast[0]])
        upper = np.concatenate([product.train_forecast[1], product.holdout_forecast[1]])
        made = [i for i, week in enumerate(weeks) if (sku, week) in by_key.index]
        assert made and made[0] == 8 and len(product.train_forecast[0]) == len(product.train), sku
        expected = by_key.loc[[(sku, weeks[i]) for i in made]]
        np.testing.assert_allclose(mean[made], expected["yhat"].to_numpy(), err_msg=sku)
        bound = expected["hi80"].to_numpy()
        known = ~np.isnan(bound)
        np.testing.assert_allclose(upper[made][known], np.maximum(bound, expected["yhat"].to_numpy())[known])
        profile = product.profile
        np.testing.assert_allclose(mean[:8], profile.mean)
        np.testing.assert_allclose(upper[:8], profile.mean * (1 + Z80 * profile.cv))


def test_the_service_observation_is_the_training_one_for_the_same_history_and_forecast(setup, forecast_setup):
    """What /recommend_order's agent sees (rl_agent.advice, given the forecast as the service computes it)
    is, value for value, what the training environment shows the agent at a week with that forecast."""
    from agent_recorder import RecordingAgent

    from rl_agent.advice import agent_advice
    from rl_agent.env import BatchedInventory

    recorder = RecordingAgent(setup[2])
    seen = recorder.seen
    catalogue, _, _, products = forecast_setup
    table = products.set_index("sku")

    for sku, product in list(catalogue.products.items())[:4]:
        level = setup[1][sku]["base_stock"].parameters["level"]
        for week in (3, 40, len(product.train) - 1):
            sim = BatchedInventory([product.case()], np.zeros(1, dtype=int), episode_length=10)
            sim.reset_rows(np.ones(1, dtype=bool))
            sim.offset[:] = week
            sim.state.pipeline[:] = 0.0
            sim.state.on_hand[:] = on_hand = float(round(product.profile.mean * 2))
            fmean, fupper = (float(f[week]) for f in product.train_forecast)
            seen.clear()
            agent_advice(recorder, product.train, on_hand, _terms(table.loc[sku]), level=level,
                         with_cost=False, forecast_mean=fmean, forecast_upper=fupper)  # fmt: skip
            np.testing.assert_allclose(seen[0][0], sim.observation()[0], rtol=1e-6, err_msg=f"{sku} week {week}")
            assert seen[0][0][18] != 1.0 or week < 8  # a forecast, not the no-forecast value


def test_batched_recommendations_equal_one_sku_at_a_time(setup):
    # Bug caught: the batched recommend (one policy call per policy group) mixing rows up: another SKU's
    # parameters, forecast or open orders, or a forecast-less row read as having one. One SKU per call
    # cannot mix anything, so the catalogue at once must give exactly its rows.
    from rl_agent.catalogue import Evaluation

    catalogue, tuned, agent = setup
    evaluation = evaluate_policies(catalogue, tuned, agent, seeds=2)
    patterns = sorted(evaluation.pattern_policy)
    choice = {p: ("rl", "s_S", "capped_base_stock", "base_stock")[i % 4] for i, p in enumerate(patterns)}
    mixed = Evaluation(evaluation.per_product, evaluation.per_pattern, choice, evaluation.seeds)
    skus = [*sorted(catalogue.products), "NOPE"]
    rng = np.random.default_rng(3)
    n, first_lead = len(skus), catalogue.products[skus[0]].spec.lead_time
    mean = np.where(rng.random(n) < 0.3, np.nan, rng.uniform(0, 20, n))
    state = pd.DataFrame(
        {
            "sku": skus,
            "on_hand": np.rint(rng.uniform(0, 30, n)),
            "forecast_mean": mean,
            "forecast_upper": np.where(rng.random(n) < 0.2, np.nan, mean * 1.5),
            "on_order": np.where(rng.random(n) < 0.5, rng.uniform(0, 10, n), np.nan),
            "open_orders": [[1.0] if i == 0 and first_lead > 1 else None for i in range(n)],
        }
    )
    for ev, ag in ((mixed, agent), (evaluation, agent), (None, agent), (None, None)):
        batched = recommend(catalogue, state, tuned, ag, ev)
        one_by_one = pd.concat(
            [recommend(catalogue, state.iloc[[i]], tuned, ag, ev) for i in range(n)], ignore_index=True
        )
        pd.testing.assert_frame_equal(batched, one_by_one, check_exact=True)
    assert set(recommend(catalogue, state, tuned, agent, mixed)["policy"].dropna()) == set(choice.values())
