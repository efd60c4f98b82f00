"""The PPO replenishment agent (stable-baselines3): one policy for a whole catalogue.

The policy network sees the normalised observation of :mod:`rl_agent.features` (state, product features
and forecast, all over the product's mean demand) and outputs an order-up-to target in [-1, 1]; so one
network serves products of any volume, and products it never trained on. Training runs PPO on a
:class:`rl_agent.env.CatalogueVecEnv` (hundreds of products stepped by numpy at once). Acting is
deterministic: the mean of the Gaussian policy.

Stored as data, never as a pickle of our classes or an sb3 ``.zip``: ``policy.pt`` holds the network's
``state_dict`` (tensors only, read back with ``torch.load(weights_only=True)``) and ``agent.json`` the
configuration needed to rebuild it (observation layout, action scaling, network shape, versions).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.policies import ActorCriticPolicy

from rl_agent.env import CatalogueVecEnv, ProductCase
from rl_agent.features import (
    CLIP,
    OBS_DIM,
    OBS_NAMES,
    TARGET_RANGE,
    DemandProfile,
    observe,
    order_from_action,
    profile_arrays,
)
from rl_agent.policies import Situation

# 2: the action's range is the agent's own (config.target_range) and the centre may be the tuned level;
# a format-1 agent is refused, not misread
FORMAT_VERSION = 2
ACTION_SCALING = "target_position = mean * base_level * (lead_time + review_period + 1) * {r:g} ** clip(a, -1, 1)"


@dataclass
class AgentConfig:
    """PPO and network settings (sb3's names)."""

    n_envs: int = 256
    episode_length: int = 104
    n_steps: int = 64
    batch_size: int = 2048
    n_epochs: int = 5
    learning_rate: float = 3e-4
    gamma: float = 0.995
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    log_std_init: float = -2.5
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    target_range: float = TARGET_RANGE  # the action spans [1/r, r] x the product's centre level
    seed: int = 0
    threads: int = 1


def _spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    return (
        gym.spaces.Box(-CLIP, CLIP, shape=(OBS_DIM,), dtype=np.float32),
        gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
    )


def _policy_kwargs(config: AgentConfig) -> dict[str, Any]:
    arch = list(config.net_arch)
    return {"net_arch": {"pi": arch, "vf": arch}, "log_std_init": config.log_std_init}


class RLAgent:
    """A trained policy network plus its configuration; ``policy_for`` turns it into a :class:`Policy`."""

    name = "rl"

    def __init__(self, network: ActorCriticPolicy, config: AgentConfig, train_info: dict[str, Any] | None = None):
        self.network = network
        self.config = config
        self.train_info = train_info or {}

    @classmethod
    def train(cls, cases: list[ProductCase], total_steps: int, config: AgentConfig | None = None) -> RLAgent:
        """PPO on the given products for ``total_steps`` environment steps (summed over the batch)."""
        config = config or AgentConfig()
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
        torch.set_num_threads(config.threads)
        if config.target_range <= 1:
            raise ValueError(f"target_range must be > 1, got {config.target_range!r}")
        env = CatalogueVecEnv(cases, config.n_envs, config.episode_length, config.seed, config.target_range)
        batch = min(config.batch_size, config.n_envs * config.n_steps)
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=config.n_steps,
            batch_size=batch,
            n_epochs=config.n_epochs,
            learning_rate=config.learning_rate,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            policy_kwargs=_policy_kwargs(config),
            seed=config.seed,
            device="cpu",
            verbose=0,
        )
        started = time.perf_counter()
        model.learn(total_timesteps=int(total_steps))
        info = {
            "total_steps": int(model.num_timesteps),
            "train_seconds": round(time.perf_counter() - started, 2),
            "products": len(cases),
        }
        return cls(model.policy, config, info)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions in [-1, 1] for a batch of observations."""
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32).reshape(-1, OBS_DIM))
        with torch.no_grad():
            actions = self.network._predict(obs, deterministic=True).cpu().numpy()
        return np.clip(actions.reshape(-1), -1.0, 1.0)

    def policy_for(self, profiles: list[DemandProfile]) -> AgentPolicy:
        """The agent as a :class:`rl_agent.policies.Policy` for rows with these demand profiles."""
        return AgentPolicy(self, profile_arrays(profiles))

    def save(self, folder: Path | str) -> dict[str, Any]:
        """Write ``policy.pt`` (state_dict) and ``agent.json``; returns the manifest (the JSON content).

        Written to a temporary name first and renamed, so a crash never leaves half a model behind."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": "stockml-rl-agent",
            "weights": "policy.pt",
            "observation": list(OBS_NAMES),
            "observation_clip": CLIP,
            "action": ACTION_SCALING.format(r=self.config.target_range),
            "config": asdict(self.config),
            "train_info": self.train_info,
            "versions": {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__},
        }
        tmp = folder / "policy.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(folder / "policy.pt")
        tmp_json = folder / "agent.json.tmp"
        tmp_json.write_text(json.dumps(manifest, indent=1))
        tmp_json.replace(folder / "agent.json")
        return manifest

    @classmethod
    def load(cls, folder: Path | str) -> RLAgent:
        folder = Path(folder)
        manifest_path = folder / "agent.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no agent.json in {folder}")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported agent format {manifest.get('format_version')!r} in {folder}: this version reads "
                f"format {FORMAT_VERSION} (its action scale differs); retrain the agent (stockml train)"
            )
        if manifest.get("observation") != list(OBS_NAMES):
            raise ValueError(f"the agent in {folder} was trained on another observation layout")
        config = AgentConfig(**manifest["config"])
        obs_space, act_space = _spaces()
        network = ActorCriticPolicy(obs_space, act_space, lambda _: 0.0, **_policy_kwargs(config))
        state = torch.load(folder / manifest["weights"], weights_only=True, map_location="cpu")
        network.load_state_dict(state)
        network.set_training_mode(False)
        return cls(network, config, manifest.get("train_info"))


class AgentPolicy:
    """The agent bound to the demand profiles of a batch of rows (one per row)."""

    name = "rl"

    def __init__(self, agent: RLAgent, profile: dict[str, np.ndarray]) -> None:
        self.agent = agent
        self.profile = profile

    def order(self, situation: Situation) -> np.ndarray:
        obs = observe(
            situation.state, situation.params, self.profile, situation.forecast_mean, situation.forecast_upper
        )
        return order_from_action(
            self.agent.act(obs), situation.state, situation.params, self.profile, self.agent.config.target_range
        )
