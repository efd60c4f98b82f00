"""An RL agent stand-in that records every observation it is asked to act on, then acts as the real one:
what lets a test compare the observation two code paths build (training vs. serving) value for value."""

from __future__ import annotations

import numpy as np

from rl_agent.agent import RLAgent


class RecordingAgent:
    """Wraps a trained :class:`RLAgent`; ``seen`` holds the observation batches in call order."""

    policy_for = RLAgent.policy_for

    def __init__(self, agent: RLAgent) -> None:
        self.agent = agent
        self.config = agent.config  # the action range the wrapped agent was trained with
        self.seen: list[np.ndarray] = []

    def act(self, observations: np.ndarray) -> np.ndarray:
        self.seen.append(np.asarray(observations))
        return self.agent.act(observations)
