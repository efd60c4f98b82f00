"""/recommend_order with the RL agent: the agent answers for the demand patterns it won on the held-out year
(its order is exactly what :func:`rl_agent.advice.agent_advice` gives), base-stock answers for the
others, when asked for, without a champion or without prices, and every answer says which policy and why, with an
expected cost simulated the same way for both. A tiny agent (a few hundred PPO steps) is trained here: the
test checks the wiring and the contract, not the agent's quality (bench.rl_* measure that)."""

from __future__ import annotations

import numpy as np
import pytest
from agent_recorder import RecordingAgent
from test_serving_engine import FakeModel, _engine, _items, _parse

from rl_agent.advice import ProductTerms, agent_advice
from rl_agent.agent import AgentConfig, RLAgent
from rl_agent.dynamics import CostConfig, InventorySpec
from rl_agent.env import ProductCase
from rl_agent.features import OBS_DIM, DemandProfile
from serving.bentos.agent import AgentLookup, ServedAgent, load_agent_folder
from serving.bentos.schemas_ops import RecommendOrderRequest


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> RLAgent:
    history = np.random.default_rng(0).poisson(3, 120).astype(float)
    spec = InventorySpec(CostConfig(holding=0.05, penalty=2.0), lead_time=2, min_order_qty=1, max_order_qty=80)
    case = ProductCase(spec, DemandProfile.of(history), history=history, name="A")
    return RLAgent.train([case], 256, AgentConfig(seed=0, n_envs=4, n_steps=32, batch_size=64))


def _item(sku: str = "A", **extra) -> dict:
    return {
        **_items(sku, weeks=30)[0],
        "on_hand": 2.0,
        "lead_time_weeks": 2,
        "unit_cost": 2.0,
        "unit_price": 5.0,
        **extra,
    }


def test_the_agent_is_centred_on_the_skus_tuned_level_when_the_registry_has_one(tmp_path, agent):
    # Bug caught: serving ignoring classical.json, so the agent ordered around another level than in training.
    pattern = _pattern(tmp_path)
    served = ServedAgent(agent, "7", {pattern: "rl"}, {"A": 40.0})
    rec = _engine_with(tmp_path / "e", served).recommend_order(_parse(RecommendOrderRequest, {"items": [_item()]}))
    weekly = [h["y"] for h in _item()["history"]]
    terms = ProductTerms(unit_cost=2.0, unit_price=5.0, lead_time=2, min_order_qty=0.0)
    forecast = _router_inputs(weekly)
    centred = agent_advice(agent, weekly, 2.0, terms, level=40.0, with_cost=False, **forecast).order_qty
    assert rec.items[0].order_qty == centred
    assert centred != agent_advice(agent, weekly, 2.0, terms, with_cost=False, **forecast).order_qty


def _engine_with(tmp_path, served: ServedAgent, model: FakeModel | None = None):
    engine = _engine(tmp_path, model or FakeModel())
    engine.agent = AgentLookup(lambda: served)
    return engine


def _router_inputs(weekly: list[float]) -> dict[str, float]:
    """The FakeModel's forecast (the history's mean every week, 80 % bound one above) as the agent reads it."""
    mean = float(np.mean(weekly))
    return {"forecast_mean": mean, "forecast_upper": mean + 1}


class TripledModel(FakeModel):
    """A router forecasting three times the history's mean, 80 % bound 6 above: far from the no-forecast values."""

    def predict(self, history, horizon):
        out = super().predict(history, horizon)
        return out.assign(yhat=out["yhat"] * 3, hi80=out["yhat"] * 3 + 6)


def test_the_agent_observes_the_routers_forecast_as_in_training(tmp_path, agent):
    # Bug caught: the service asking the agent without the forecast it trained with (the no-forecast values).
    recorder = RecordingAgent(agent)
    seen = recorder.seen
    pattern = _pattern(tmp_path)
    served = ServedAgent(recorder, "7", {pattern: "rl"})
    model = TripledModel()
    rec = _engine_with(tmp_path / "e", served, model).recommend_order(
        _parse(RecommendOrderRequest, {"items": [_item()]})
    )
    weekly = [h["y"] for h in _item()["history"]]
    mean = float(np.mean(weekly))
    assert seen[0][0][18] == pytest.approx(3.0, rel=1e-5)  # forecast mean over L + R weeks / mu
    assert seen[0][0][19] == pytest.approx(6 / mean, rel=1e-5)  # next week's 80 % bound above it / mu
    terms = ProductTerms(unit_cost=2.0, unit_price=5.0, lead_time=2, min_order_qty=0.0)
    expected = agent_advice(agent, weekly, 2.0, terms, with_cost=False, forecast_mean=3 * mean,
                            forecast_upper=3 * mean + 6)  # fmt: skip
    assert rec.items[0].order_qty == expected.order_qty


def _pattern(tmp_path) -> str:
    """The pattern the engine computes for the test history (what the agent's choice is looked up by)."""
    out = _engine(tmp_path / "p", FakeModel()).recommend_order(_parse(RecommendOrderRequest, {"items": [_item()]}))
    return out.items[0].pattern


def test_agent_answers_for_the_patterns_it_won(tmp_path, agent):
    pattern = _pattern(tmp_path)
    engine = _engine_with(tmp_path / "e", ServedAgent(agent, "7", {pattern: "rl"}))
    out = engine.recommend_order(_parse(RecommendOrderRequest, {"items": [_item()]}))
    rec = out.items[0]
    assert rec.policy == "rl" and out.policy == "rl" and rec.agent_version == "7"
    assert "stockml-rl-agent v7" in rec.policy_reason and pattern in rec.policy_reason
    weekly = [h["y"] for h in _item()["history"]]
    terms = ProductTerms(unit_cost=2.0, unit_price=5.0, lead_time=2, min_order_qty=0.0)
    assert rec.order_qty == agent_advice(agent, weekly, 2.0, terms, with_cost=False, **_router_inputs(weekly)).order_qty
    assert rec.expected_cost_per_period is not None and rec.expected_cost_per_period > 0


@pytest.mark.parametrize(
    ("served", "extra", "why"),
    [
        ("lost", {}, "had a lower held-out cost than the agent"),
        ("none", {}, "no stockml-rl-agent champion"),
        ("won", {"policy": "base-stock"}, "asked for"),
        ("won", {"unit_price": None}, "needs unit_cost and unit_price"),
    ],
)
def test_base_stock_answers_otherwise_and_says_why(tmp_path, agent, served, extra, why):
    pattern = _pattern(tmp_path)
    choice = {
        "lost": ServedAgent(agent, "7", {pattern: "s_S"}),
        "none": ServedAgent(),
        "won": ServedAgent(agent, "7", {pattern: "rl"}),
    }[served]
    item = {k: v for k, v in _item(**extra).items() if v is not None}
    out = _engine_with(tmp_path / "e", choice).recommend_order(_parse(RecommendOrderRequest, {"items": [item]}))
    rec = out.items[0]
    assert rec.policy == "base-stock" and rec.agent_version is None and why in rec.policy_reason
    assert rec.order_qty == max(0.0, np.ceil(rec.order_up_to - rec.inventory_position)) or rec.order_qty == 0
    if "unit_price" in item:
        assert rec.expected_cost_per_period is not None and rec.expected_cost_per_period > 0
    else:
        assert rec.expected_cost_per_period is None


def test_a_registered_folder_loads_with_its_pattern_choice(tmp_path, agent):
    folder = tmp_path / "artifacts" / "agent"
    agent.save(folder)
    (folder / "pattern_policy.json").write_text('{"smooth": "rl", "lumpy": "base_stock"}')
    (folder / "classical.json").write_text('{"A": {"base_stock": {"level": 9.0}, "s_S": {"s": 3, "S": 9}}}')
    served = load_agent_folder(tmp_path / "artifacts", "3")
    assert served.version == "3" and served.answers_for("smooth")[0] and not served.answers_for("lumpy")[0]
    assert served.levels == {"A": 9.0}
    obs = np.random.default_rng(1).uniform(0, 2, (4, OBS_DIM))
    np.testing.assert_allclose(served.agent.act(obs), agent.act(obs))
