"""The PPO agent: a tiny training run, the state_dict + JSON round trip, seeded determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rl_agent.agent import AgentConfig, RLAgent
from rl_agent.dynamics import BatchParams, BatchState, CostConfig, InventorySpec
from rl_agent.env import ProductCase
from rl_agent.features import OBS_DIM
from rl_agent.policies import Situation

TINY = AgentConfig(n_envs=8, n_steps=32, batch_size=64, n_epochs=2, episode_length=20, seed=3)
CASES = [
    ProductCase.poisson(InventorySpec(CostConfig(1, 4), lead_time=2), 5.0),
    ProductCase.poisson(InventorySpec(CostConfig(1, 9), lead_time=0), 20.0),
]


@pytest.fixture(scope="module")
def agent() -> RLAgent:
    return RLAgent.train(CASES, 512, TINY)


def test_save_and_load_give_the_same_actions(agent, tmp_path):
    manifest = agent.save(tmp_path / "agent")
    assert sorted(p.name for p in (tmp_path / "agent").iterdir()) == ["agent.json", "policy.pt"]
    assert manifest == json.loads((tmp_path / "agent" / "agent.json").read_text())
    assert manifest["versions"]["stable_baselines3"] and manifest["observation"][0] == "on_hand"
    # Tensors only: loadable with weights_only=True (no pickled classes).
    assert all(
        isinstance(v, torch.Tensor) for v in torch.load(tmp_path / "agent" / "policy.pt", weights_only=True).values()
    )
    loaded = RLAgent.load(tmp_path / "agent")
    obs = np.random.default_rng(0).uniform(-2, 2, (50, OBS_DIM)).astype(np.float32)
    assert np.array_equal(agent.act(obs), loaded.act(obs))


def test_training_is_deterministic_with_a_seed(agent):
    again = RLAgent.train(CASES, 512, TINY)
    obs = np.random.default_rng(1).uniform(-2, 2, (20, OBS_DIM)).astype(np.float32)
    assert np.array_equal(agent.act(obs), again.act(obs))


def test_agent_acts_as_a_policy(agent):
    spec = CASES[0].spec
    params = BatchParams.repeat(spec, 4)
    state = BatchState.start(params, np.array([0.0, 5.0, 10.0, 50.0]))
    orders = agent.policy_for([CASES[0].profile] * 4).order(Situation(state, params))
    assert orders.shape == (4,) and (orders >= 0).all()
    assert orders[3] <= orders[0]  # an order-up-to target: more stock, no larger order


def test_load_refuses_a_foreign_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        RLAgent.load(tmp_path)
    (tmp_path / "agent.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="format"):
        RLAgent.load(tmp_path)


def test_the_action_range_is_the_agents_own_and_survives_the_round_trip(agent, tmp_path):
    # Bug caught: an agent trained with one action range acting (after a reload) on another one.
    from dataclasses import replace

    from rl_agent.features import observe, profile_arrays, target_from_action

    narrow = RLAgent(agent.network, replace(agent.config, target_range=2.0))
    manifest = narrow.save(tmp_path / "narrow")
    assert "2 ** clip(a, -1, 1)" in manifest["action"] and manifest["config"]["target_range"] == 2.0
    loaded = RLAgent.load(tmp_path / "narrow")
    spec = CASES[0].spec
    params = BatchParams.repeat(spec, 1)
    state = BatchState.start(params, np.array([0.0]))
    profile = CASES[0].profile
    order = loaded.policy_for([profile]).order(Situation(state, params))

    arrays = profile_arrays([profile])
    action = loaded.act(observe(state, params, arrays))
    assert order[0] == pytest.approx(target_from_action(action, params, arrays, 2.0)[0])
    assert order[0] != pytest.approx(target_from_action(action, params, arrays, 4.0)[0])
    with pytest.raises(ValueError, match="target_range"):
        RLAgent.train(CASES, 64, replace(TINY, target_range=1.0))
