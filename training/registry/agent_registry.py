"""The RL agent in the MLflow registry (``stockml-rl-agent``): logged as data, promoted on cost.

The agent's folder (``policy.pt``, a torch ``state_dict``; ``agent.json``, its observation layout,
action scaling and versions; ``classical.json``, the tuned classical parameters per SKU;
``pattern_policy.json``, which policy answers for each demand pattern) is logged as a "model from
code" pyfunc (:mod:`training.registry.agent_model_code`): a frame of normalised observations
(the columns of :data:`rl_agent.features.OBS_NAMES`) in, the action and the order-up-to target
over mean demand out. Never a pickle of our classes nor an sb3 ``.zip``.

A new version gets alias ``challenger``. :func:`promote_agent` moves ``champion`` to it only when
the agent's held-out cost per period over the catalogue is not above the best classical policy's
(the same guardrail idea as the router's, judged on decision cost rather than MASE); a refusal
leaves the champion where it is and is recorded on the version's tags, like the router's.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from training.registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    PromotionDecision,
    PromotionError,
    RegisteredVersion,
    _pip_requirements,
    actor,
    git_commit,
    version_by_alias,
)
from training.registry.mlflow_registry import (
    configure as configure_registry,
)
from training.registry.names import RL_AGENT_MODEL

log = logging.getLogger("stockml.registry")

AGENT_MODEL_CODE = Path(__file__).with_name("agent_model_code.py")
AGENT_ARTIFACT = "agent"
RL_REQUIREMENTS = ("torch", "stable-baselines3", "gymnasium")
AGENT_COST = "holdout_cost_rl"


def configure(tracking_uri: str, artifact_root: Path | None = None) -> str:
    """Point MLflow at ``tracking_uri``, experiment ``stockml-rl-agent``."""
    return configure_registry(tracking_uri, RL_AGENT_MODEL, artifact_root)


def catalogue_costs(per_product: pd.DataFrame) -> dict[str, float]:
    """Mean held-out cost per period over the SKUs, per policy (``{policy: cost}``)."""
    return {str(k): float(v) for k, v in per_product.groupby("policy")["cost_per_period"].mean().items()}


def best_classical(costs: dict[str, float]) -> tuple[str, float]:
    classical = {k: v for k, v in costs.items() if k != "rl"}
    if not classical:
        raise PromotionError("no classical policy was evaluated to judge the agent against")
    name = min(classical, key=classical.__getitem__)
    return name, classical[name]


def log_agent(
    folder: Path,
    *,
    costs: dict[str, float],
    tags: dict[str, str],
    files: list[Path] = (),
    run_name: str | None = None,
) -> RegisteredVersion:
    """Log the agent folder as a pyfunc with its held-out costs; register it as ``challenger``."""
    from rl_agent.features import OBS_NAMES

    if "rl" not in costs:
        raise PromotionError("the agent was not evaluated: no 'rl' cost to register it with")
    name, best = best_classical(costs)
    tags = {"git_commit": git_commit(), "trained_by": actor(), **tags, "best_classical": name}
    metrics = {f"holdout_cost_{k}": v for k, v in costs.items()}
    example = pd.DataFrame([[0.0] * len(OBS_NAMES)], columns=list(OBS_NAMES))
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")
        mlflow.log_artifact(str(Path(folder) / "agent.json"), "agent_manifest")
        info = mlflow.pyfunc.log_model(
            name="rl_agent",
            python_model=str(AGENT_MODEL_CODE),
            artifacts={AGENT_ARTIFACT: str(folder)},
            input_example=example,
            pip_requirements=_pip_requirements(RL_REQUIREMENTS),
            registered_model_name=RL_AGENT_MODEL,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(RL_AGENT_MODEL, CHALLENGER, version)
    for k, v in {**tags, AGENT_COST: f"{costs['rl']:.6f}", "holdout_cost_best_classical": f"{best:.6f}"}.items():
        client.set_model_version_tag(RL_AGENT_MODEL, version, k, str(v))
    log.info("registered model", extra={"model": RL_AGENT_MODEL, "version": version})
    return RegisteredVersion(RL_AGENT_MODEL, version, run.info.run_id, info.model_uri)


def promote_agent(version: str, tolerance: float = 0.0, who: str | None = None) -> PromotionDecision:
    """Champion := ``version`` when its held-out cost ≤ the best classical policy's × (1 + tolerance)."""
    client = MlflowClient()
    cand = client.get_model_version(RL_AGENT_MODEL, str(version))
    champ = version_by_alias(RL_AGENT_MODEL, CHAMPION)
    try:
        cost = float(cand.tags[AGENT_COST])
        classical = float(cand.tags["holdout_cost_best_classical"])
    except (KeyError, ValueError) as exc:
        raise PromotionError(f"{RL_AGENT_MODEL} v{version} carries no held-out costs to judge it on") from exc
    ok = cost <= classical * (1 + tolerance) + 1e-12
    best = cand.tags.get("best_classical", "classical")
    reason = (
        f"held-out cost per period {cost:.4f} vs best classical ({best}) {classical:.4f} "
        f"({'not above' if ok else 'above'} it, tolerance {tolerance:.1%})"
    )
    decision = PromotionDecision(
        RL_AGENT_MODEL, str(version), str(champ.version) if champ is not None else None, ok, False, reason,
        cost, classical, tolerance, who or actor(), pd.Timestamp.now(tz="UTC").isoformat(),
    )  # fmt: skip
    for k, v in decision.as_tags().items():
        client.set_model_version_tag(RL_AGENT_MODEL, str(version), k, v)
    if ok:
        client.set_registered_model_alias(RL_AGENT_MODEL, CHAMPION, str(version))
        current = version_by_alias(RL_AGENT_MODEL, CHALLENGER)
        if current is not None and str(current.version) == str(version):
            client.delete_registered_model_alias(RL_AGENT_MODEL, CHALLENGER)
    log.info("promotion decided", extra={"promotion": asdict(decision)})
    return decision
