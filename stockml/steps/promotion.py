"""Promotion: move ``champion`` to the challenger this run registered, through the guardrails."""

from __future__ import annotations

from dataclasses import asdict

from stockml.run import Run
from stockml.settings import Settings
from stockml.steps.registry import configure_mlflow
from training.registry import mlflow_registry as reg


def promote(
    s: Settings,
    name: str,
    version: str | None = None,
    tolerance: float | None = None,
    force: bool = False,
    who: str | None = None,
) -> reg.PromotionDecision:
    """The registry's guardrailed promotion with the settings' registry, tolerance and actor."""
    configure_mlflow(s)
    tol = s.promotion_tolerance if tolerance is None else tolerance
    return reg.promote(name, version, tol, force, who=who or reg.actor(s.actor))


def promote_step(run: Run, force: bool = False) -> reg.PromotionDecision:
    """Promote the challenger this run registered through the guardrails."""
    registered = run.load_json(run.layout.router)
    decision = promote(run.settings, registered["name"], registered["version"], force=force)
    record_decision(run, decision)
    return decision


def record_decision(run: Run, decision: reg.PromotionDecision) -> None:
    run.save_json(run.layout.promotion_of(decision.name), asdict(decision))
