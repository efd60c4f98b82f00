"""The gymnasium environment and the batched VecEnv: the checker, hand-computed steps, seeding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rl_agent.dynamics import CostConfig, InventorySpec
from rl_agent.env import CatalogueVecEnv, InventoryEnv, ProductCase
from rl_agent.features import OBS_DIM, DemandProfile

SPEC = InventorySpec(CostConfig(holding=1, penalty=4), lead_time=2, mode="lost_sales")


def history_case(history, forecast=None) -> ProductCase:
    history = np.asarray(history, dtype=float)
    upper = None if forecast is None else np.asarray(forecast) * 1.5
    return ProductCase(SPEC, DemandProfile.of(history), history=history, forecast_mean=forecast, forecast_upper=upper)


@pytest.mark.parametrize("action_mode", ["target", "quantity"])
def test_passes_the_gymnasium_checker(action_mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(InventoryEnv(ProductCase.poisson(SPEC, 5.0), action_mode=action_mode), skip_render_check=True)
        check_env(InventoryEnv(history_case(np.arange(20.0), np.full(20, 9.5)), action_mode=action_mode))


def test_quantity_steps_by_hand_with_replayed_history():
    env = InventoryEnv(history_case([3, 0, 6, 2]), episode_length=3, action_mode="quantity")
    env.reset(seed=0, options={"on_hand": 4, "pipeline": [2], "offset": 0})
    _, r0, _, trunc0, i0 = env.step(np.array([5.0], dtype=np.float32))  # demand 3: 1 left, then 2 arrive
    _, r1, _, trunc1, i1 = env.step(np.array([0.0], dtype=np.float32))  # demand 0: 3 held, then 5 arrive
    _, r2, _, trunc2, i2 = env.step(np.array([0.0], dtype=np.float32))  # demand 6 on 8: 2 left
    assert [i0["end_stock"], i1["end_stock"], i2["end_stock"]] == [1, 3, 2]
    assert [r0, r1, r2] == [-1.0, -3.0, -2.0]
    assert (trunc0, trunc1, trunc2) == (False, False, True)


def test_lost_sales_penalty_in_the_reward():
    env = InventoryEnv(history_case([10, 10]), action_mode="quantity")
    env.reset(options={"on_hand": 4, "pipeline": [0], "offset": 0})
    _, reward, _, _, info = env.step(np.array([0.0], dtype=np.float32))
    assert info["shortage"] == 6 and info["shortage_cost"] == 24 and reward == -24


def test_seeded_episodes_repeat():
    def rollout(seed):
        env = InventoryEnv(ProductCase.poisson(SPEC, 5.0), episode_length=30)
        obs, _ = env.reset(seed=seed)
        rewards = [env.step(np.array([0.1], dtype=np.float32))[1] for _ in range(30)]
        return obs, rewards

    (o1, r1), (o2, r2), (_, r3) = rollout(7), rollout(7), rollout(8)
    assert np.array_equal(o1, o2) and r1 == r2 and r1 != r3


def test_forecast_enters_the_observation():
    env = InventoryEnv(history_case(np.full(10, 4.0), np.full(10, 8.0)))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,)
    assert obs[18] == pytest.approx(2.0)  # forecast mean 8 over mean demand 4
    assert obs[19] == pytest.approx(1.0)  # 80 % bound 12 minus mean 8, over 4


def test_vec_env_steps_many_products_and_restarts_episodes():
    cases = [ProductCase.poisson(SPEC.with_(lead_time=lead), mean) for lead, mean in ((0, 2.0), (4, 5.0), (8, 50.0))]
    env = CatalogueVecEnv(cases, n_envs=6, episode_length=5, seed=1)
    obs = env.reset()
    assert obs.shape == (6, OBS_DIM)
    for _ in range(5):
        obs, rewards, dones, infos = env.step(np.zeros((6, 1)))
        assert (rewards <= 0).all()
    assert dones.all() and all(i["TimeLimit.truncated"] for i in infos)
    assert env.sim.elapsed.max() == 0  # every row restarted


def test_bad_cases_get_clear_errors():
    with pytest.raises(ValueError, match="exactly one"):
        ProductCase(SPEC, DemandProfile.poisson(5.0))
    with pytest.raises(ValueError, match="align"):
        history_case(np.ones(5), np.ones(4))
    with pytest.raises(ValueError, match="lead time"):
        ProductCase.poisson(SPEC.with_(lead_time=9), 5.0)


def test_each_week_reads_the_forecast_made_for_it_never_a_later_one():
    # Bug caught: averaging the per-origin entries of later weeks (made with demand the decision cannot know).
    history = np.full(6, 4.0)
    forecast = np.array([4.0, 8.0, 12.0, 16.0, 20.0, 24.0])  # entry t: made at the start of week t
    case = ProductCase(SPEC, DemandProfile.of(history), history=history, forecast_mean=forecast,
                       forecast_upper=forecast + 2.0)  # fmt: skip
    env = InventoryEnv(case, episode_length=6, action_mode="quantity")
    obs, _ = env.reset(seed=0, options={"offset": 2})
    seen = [obs]
    for _ in range(5):
        seen.append(env.step(np.array([0.0], dtype=np.float32))[0])
    weeks = (2 + np.arange(6)) % 6
    np.testing.assert_allclose([o[18] for o in seen], forecast[weeks] / 4.0, rtol=1e-6)
    np.testing.assert_allclose([o[19] for o in seen], np.full(6, 0.5), rtol=1e-6)


def test_simulate_shows_the_policy_column_t_at_period_t():
    from rl_agent.dynamics import BatchParams
    from rl_agent.simulate import simulate

    class Recorder:
        name = "recorder"
        seen: list = []  # noqa: RUF012 - a test double

        def order(self, situation):
            self.seen.append((situation.forecast_mean.copy(), situation.forecast_upper.copy()))
            return np.zeros(situation.params.n)

    params = BatchParams.from_specs([SPEC, SPEC])
    fmean = np.arange(10.0).reshape(2, 5)
    policy = Recorder()
    simulate(policy, params, np.ones((2, 5)), forecast_mean=fmean, forecast_upper=fmean + 1)
    for t, (mean, upper) in enumerate(policy.seen):
        np.testing.assert_array_equal(mean, fmean[:, t])
        np.testing.assert_array_equal(upper, fmean[:, t] + 1)
