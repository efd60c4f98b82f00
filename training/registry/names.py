"""Registered model names (DESIGN.md: data contracts): one constant each, used everywhere."""

ROUTER_MODEL = "stockml-router"
LSTM_MODEL = "stockml-lstm"
RL_AGENT_MODEL = "stockml-rl-agent"
