"""The replenishment layer: a gymnasium environment of a stocked product, classical policies, the exact
optimum by dynamic programming where it is tractable, and a PPO agent (stable-baselines3)."""
