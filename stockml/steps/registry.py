"""The MLflow registry as the pipeline sees it: where it is, who acts, what it holds."""

from __future__ import annotations

import mlflow

from stockml.settings import Settings
from training.registry import mlflow_registry as reg
from training.registry.names import ROUTER_MODEL


def configure_mlflow(s: Settings) -> str:
    """Point MLflow at the configured registry (embedded SQLite under ``home`` by default)."""
    s.home.mkdir(parents=True, exist_ok=True)
    return reg.configure(s.tracking_uri, s.mlflow_experiment, s.artifact_root)


def provenance_tags(s: Settings) -> dict[str, str]:
    """Tags every registered version carries: the code's commit and who trained it."""
    return {"git_commit": reg.git_commit(s.git_commit), "trained_by": reg.actor(s.actor)}


def registry_summary(name: str = ROUTER_MODEL) -> list[dict]:
    """Every version with its aliases and key tags (for `stockml models`)."""
    client = mlflow.MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases  # {alias: version}; search results omit them
    except mlflow.exceptions.MlflowException:
        return []
    rows = []
    for v in client.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "version": int(v.version),
                "aliases": ",".join(sorted(a for a, ver in aliases.items() if str(ver) == str(v.version))),
                "holdout_mase": v.tags.get("holdout_mase", ""),
                "data_end": v.tags.get("data_end", ""),
                "git_commit": v.tags.get("git_commit", "")[:10],
                "promotion": v.tags.get("promotion.reason", ""),
                "run_id": v.run_id,
            }
        )
    return sorted(rows, key=lambda r: r["version"])
