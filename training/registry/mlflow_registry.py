"""Log, register and promote the router (and the LSTM on its own) in the MLflow model registry.

Aliases, not stages (MLflow 3): a new version gets ``challenger``; ``champion`` is what serves.
``champion`` only moves through :func:`promote`, which scores the candidate and the current
champion on the same holdout (the candidate's last backtest window, stored with its run) and
refuses a candidate that is worse beyond a tolerance. Every decision, refused ones included,
is written as tags on the model version: figures, who or what decided, when, forced or not.
Rolling back is moving the alias back (:func:`rollback`).
"""

from __future__ import annotations

import getpass
import logging
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

from training.forecasting.metrics import mean_mase
from training.registry.member_model import MemberModel, save_member_model
from training.registry.names import ROUTER_MODEL
from training.registry.pyfunc import ARTIFACT, MEMBER_ARTIFACT
from training.router.storage import save_router

log = logging.getLogger("stockml.registry")

MODEL_NAME = ROUTER_MODEL
EXPERIMENT = ROUTER_MODEL
CHAMPION, CHALLENGER = "champion", "challenger"
HOLDOUT_DIR = "holdout"
# The drift check's reference rows (one per product) logged beside a registered router
DRIFT_REFERENCE_DIR = "drift_reference"
DRIFT_REFERENCE_FILE = "features.parquet"
ROUTER_MODEL_CODE = Path(__file__).with_name("router_model_code.py")  # the pyfunc's "models from code" file
MEMBER_MODEL_CODE = Path(__file__).with_name("member_model_code.py")  # the same for a member on its own
DEEP_REQUIREMENTS = ("torch", "neuralforecast", "pytorch-lightning")


class PromotionError(RuntimeError):
    """Promotion cannot be decided (no such version, no challenger, no holdout)."""


def configure(tracking_uri: str, experiment: str = EXPERIMENT, artifact_root: Path | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and make sure the experiment exists; returns its id.

    With the embedded SQLite store, artifacts go to ``artifact_root`` (absolute), not to a
    ``mlruns`` folder wherever the process happens to run.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        mlflow.set_experiment(experiment)
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root and not tracking_uri.startswith("http") else None
    exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return exp_id


def git_commit(configured: str | None = None) -> str:
    """The commit of the code that trained the model: ``configured`` (settings, for images) wins."""
    if configured:
        return configured
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def actor(configured: str | None = None) -> str:
    """Who or what acts: ``configured`` (settings; Airflow passes dag/run) or user@host."""
    return configured or f"{getpass.getuser()}@{socket.gethostname()}"


def _pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    from importlib.metadata import version

    pkgs = ["stockml", "mlflow", "xgboost-cpu", "statsforecast", "pandas", "numpy", "scikit-learn", "scipy", *extra]
    out = []
    for p in pkgs:
        try:
            out.append(f"{p}=={version(p)}")
        except Exception:
            continue
    return out


def router_signature(example: pd.DataFrame, output: pd.DataFrame, horizon: int) -> ModelSignature:
    """The pyfunc's signature: ``y`` of any numeric type (unit counts are integers, MLflow would
    refuse int64 against a double column), ``ds`` a datetime, ``unique_id`` a string."""
    inferred = infer_signature(
        example.astype({"ds": "datetime64[ns]"}),
        output.astype({"step": "float64"}),  # integer columns make MLflow warn about missing values
        params={"horizon": horizon},
    )
    inputs = Schema([ColSpec("string", "unique_id"), ColSpec("datetime", "ds"), ColSpec(AnyType(), "y")])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def model_members(model_uri: str) -> list[dict]:
    """The members a registered router carries, from its manifest (class, package, version, state)."""
    from mlflow.pyfunc import load_model

    return list(load_model(model_uri).unwrap_python_model().manifest["members"])


def split_holdout(
    demand: pd.DataFrame, cutoff: pd.Timestamp, horizon: int, skus: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history up to ``cutoff``, the next ``horizon`` weeks) of ``skus`` (default: all)."""
    d = demand if skus is None else demand[demand["unique_id"].isin(skus)]
    end = cutoff + pd.Timedelta(weeks=horizon)
    return d[d["ds"] <= cutoff], d[(d["ds"] > cutoff) & (d["ds"] <= end)]


@dataclass
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str

    @property
    def alias_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_router(
    model: Any,
    *,
    params: dict,
    metrics: dict[str, float],
    tags: dict[str, str],
    holdout: tuple[pd.DataFrame, pd.DataFrame],
    artifacts: dict[str, Path] | None = None,
    name: str = MODEL_NAME,
    run_name: str | None = None,
) -> RegisteredVersion:
    """Log the router as a pyfunc, register a new version and give it the ``challenger`` alias.

    ``holdout`` = (history up to the holdout cutoff, the actuals after it): stored with the
    run so that promotion can score any two versions on exactly the same data.
    """
    return log_model(
        ModelToLog(
            save=lambda folder: save_router(model, folder),
            predict=lambda history, h: model.predict(history, horizon=h, n_jobs=1),
            horizon=int(model.horizon),
            code=ROUTER_MODEL_CODE,
            artifact=ARTIFACT,
            flavour_name="router",
            manifest_dir="router_manifest",
            score_metric="holdout_mase_router",
        ),
        params=params, metrics=metrics, tags=tags, holdout=holdout, artifacts=artifacts, name=name,
        run_name=run_name,
    )  # fmt: skip


def log_member(
    model: MemberModel,
    *,
    name: str,
    params: dict,
    metrics: dict[str, float],
    tags: dict[str, str],
    holdout: tuple[pd.DataFrame, pd.DataFrame],
    run_name: str | None = None,
) -> RegisteredVersion:
    """Log one member (the LSTM) as its own pyfunc and register it as ``challenger`` of ``name``.

    ``metrics["holdout_mase"]`` is its score on ``holdout``, which promotion re-measures against the champion.
    """
    return log_model(
        ModelToLog(
            save=lambda folder: save_member_model(model, folder),
            predict=lambda history, h: model.predict(history, h),
            horizon=model.horizon,
            code=MEMBER_MODEL_CODE,
            artifact=MEMBER_ARTIFACT,
            flavour_name=model.method.lower(),
            manifest_dir=f"{model.method.lower()}_manifest",
            score_metric="holdout_mase",
            extra_requirements=DEEP_REQUIREMENTS,
        ),
        params=params, metrics=metrics, tags=tags, holdout=holdout, name=name, run_name=run_name,
    )  # fmt: skip


@dataclass
class ModelToLog:
    """What :func:`log_model` needs to know of a model saved as data and served as a "model from code" pyfunc.

    ``save(folder)`` writes the model (manifest and state files) and returns the manifest's path;
    ``predict(history, h)`` forecasts in process (for the signature's example); ``code`` is the
    pyfunc's code file and ``artifact`` the key its ``load_context`` reads the saved folder under;
    ``score_metric`` names the metric copied to the version's ``holdout_mase`` tag.
    """

    save: Callable[[Path], Path]
    predict: Callable[[pd.DataFrame, int], pd.DataFrame]
    horizon: int
    code: Path
    artifact: str
    flavour_name: str
    manifest_dir: str
    score_metric: str
    extra_requirements: tuple[str, ...] = ()


def log_model(
    spec: ModelToLog,
    *,
    params: dict,
    metrics: dict[str, float],
    tags: dict[str, str],
    holdout: tuple[pd.DataFrame, pd.DataFrame],
    artifacts: dict[str, Path] | None = None,
    name: str,
    run_name: str | None = None,
) -> RegisteredVersion:
    """Log a model as a pyfunc with its manifest, holdout, metrics and provenance; register it as ``challenger``.

    One path for every registered model (the router, the LSTM), so that :func:`promote` and
    :func:`rollback` judge any of them the same way: from the holdout stored with the run.
    """
    tags = {"git_commit": git_commit(), "trained_by": actor(), **tags}
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        mlflow.set_tags(tags)
        hist, actual = holdout
        hdir = Path(tmp) / HOLDOUT_DIR
        hdir.mkdir()
        hist.to_parquet(hdir / "history.parquet", index=False)
        actual.to_parquet(hdir / "actuals.parquet", index=False)
        mlflow.log_artifacts(str(hdir), HOLDOUT_DIR)
        for path_in_run, path in (artifacts or {}).items():
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), path_in_run)
            elif Path(path).exists():
                mlflow.log_artifact(str(path), path_in_run or None)
        saved = Path(tmp) / f"{spec.flavour_name}_model"
        manifest = spec.save(saved)
        mlflow.log_artifact(str(manifest), spec.manifest_dir)
        example = hist[hist["unique_id"].isin(hist["unique_id"].unique()[:2])]
        out_example = spec.predict(example, 2)
        info = mlflow.pyfunc.log_model(
            name=spec.flavour_name,
            input_example=(example.astype({"ds": "datetime64[ns]"}), {"horizon": 2}),
            python_model=str(spec.code),
            artifacts={spec.artifact: str(saved)},
            signature=router_signature(example, out_example, spec.horizon),
            pip_requirements=_pip_requirements(spec.extra_requirements),
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(name, CHALLENGER, version)
    for k, v in {**tags, "holdout_mase": f"{metrics.get(spec.score_metric, float('nan')):.4f}"}.items():
        client.set_model_version_tag(name, version, k, str(v))
    log.info("registered model", extra={"model": name, "version": version, "run_id": run.info.run_id})
    return RegisteredVersion(name, version, run.info.run_id, info.model_uri)


def version_by_alias(name: str, alias: str) -> Any | None:
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_drift_reference(run_id: str) -> pd.DataFrame | None:
    """The drift reference rows logged with run ``run_id`` (:data:`DRIFT_REFERENCE_DIR`), or None for a
    model registered before they were logged (the caller then recomputes them from the source)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{DRIFT_REFERENCE_DIR}/{DRIFT_REFERENCE_FILE}", dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        return pd.read_parquet(local)


def load_holdout(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_DIR, dst_path=tmp)
        except (MlflowException, OSError) as exc:
            raise PromotionError(f"run {run_id} has no holdout data to judge it on ({exc})") from exc
        return pd.read_parquet(Path(local) / "history.parquet"), pd.read_parquet(Path(local) / "actuals.parquet")


def holdout_score(model_uri: str, history: pd.DataFrame, actuals: pd.DataFrame) -> float:
    """Mean MASE (lag-1 in-sample scale, as M4 weekly) of a registered model on a holdout."""
    model = mlflow.pyfunc.load_model(model_uri)
    h = int(actuals.groupby("unique_id").size().max())
    return forecast_score(model.predict(history, params={"horizon": h}), history, actuals)


def forecast_score(forecasts: pd.DataFrame, history: pd.DataFrame, actuals: pd.DataFrame) -> float:
    """Mean MASE of ``forecasts`` (unique_id, ds, yhat) against ``actuals``; a missing forecast counts as 0."""
    merged = actuals.merge(forecasts[["unique_id", "ds", "yhat"]], on=["unique_id", "ds"], how="left")
    return mean_mase(merged.assign(yhat=merged["yhat"].fillna(0.0)), history)


@dataclass
class PromotionDecision:
    name: str
    candidate: str
    previous_champion: str | None
    promoted: bool
    forced: bool
    reason: str
    candidate_score: float | None
    champion_score: float | None
    tolerance: float
    actor: str
    at: str

    def as_tags(self) -> dict[str, str]:
        return {f"promotion.{k}": "" if v is None else str(v) for k, v in asdict(self).items() if k != "name"}


def promote(
    name: str = MODEL_NAME,
    version: str | None = None,
    tolerance: float = 0.0,
    force: bool = False,
    who: str | None = None,
) -> PromotionDecision:
    """Move ``champion`` to ``version`` (default: the challenger) if it is not worse on the holdout.

    "Not worse" = candidate MASE ≤ champion MASE × (1 + tolerance), both scored on the
    candidate's holdout. ``force`` skips the comparison; the decision records that it did.
    """
    client = MlflowClient()
    if version is None:
        cand = version_by_alias(name, CHALLENGER)
        if cand is None:
            raise PromotionError(f"{name} has no '{CHALLENGER}' version; train one or pass --version")
    else:
        try:
            cand = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise PromotionError(f"{name} has no version {version}") from exc
    champ = version_by_alias(name, CHAMPION)
    now = pd.Timestamp.now(tz="UTC").isoformat()
    who = who or actor()
    base = {"name": name, "candidate": str(cand.version), "tolerance": tolerance, "actor": who, "at": now}
    if champ is not None and str(champ.version) == str(cand.version):
        return PromotionDecision(
            **base, previous_champion=str(champ.version), promoted=False, forced=force,
            reason="already champion", candidate_score=None, champion_score=None,
        )  # fmt: skip
    cand_score = champ_score = None
    if champ is None:
        ok, reason = True, "first champion"
    elif force:
        ok, reason = True, "forced: guardrails skipped"
    else:
        hist, actual = load_holdout(cand.run_id)
        cand_score = holdout_score(f"models:/{name}/{cand.version}", hist, actual)
        champ_score = holdout_score(f"models:/{name}/{champ.version}", hist, actual)
        ok = cand_score <= champ_score * (1 + tolerance) + 1e-12
        reason = (
            f"holdout MASE {cand_score:.4f} vs champion {champ_score:.4f} "
            f"({'within' if ok else 'beyond'} tolerance {tolerance:.1%})"
        )
    decision = PromotionDecision(
        **base, previous_champion=str(champ.version) if champ is not None else None, promoted=ok,
        forced=force and champ is not None, reason=reason, candidate_score=cand_score, champion_score=champ_score,
    )  # fmt: skip
    for k, v in decision.as_tags().items():
        client.set_model_version_tag(name, str(cand.version), k, v)
    if ok:
        client.set_registered_model_alias(name, CHAMPION, str(cand.version))
        if champ is not None:
            client.set_model_version_tag(name, str(champ.version), "promotion.replaced_by", str(cand.version))
        current = version_by_alias(name, CHALLENGER)
        if current is not None and str(current.version) == str(cand.version):
            client.delete_registered_model_alias(name, CHALLENGER)
    log.info("promotion decided", extra={"promotion": asdict(decision)})
    return decision


def rollback(name: str = MODEL_NAME, who: str | None = None) -> PromotionDecision:
    """Move ``champion`` back to the version it replaced (recorded at promotion)."""
    client = MlflowClient()
    champ = version_by_alias(name, CHAMPION)
    if champ is None:
        raise PromotionError(f"{name} has no champion to roll back")
    previous = champ.tags.get("promotion.previous_champion")
    if not previous:
        raise PromotionError(f"champion v{champ.version} replaced no earlier version; nothing to roll back to")
    decision = PromotionDecision(
        name, previous, str(champ.version), True, True, f"rollback from v{champ.version}", None, None, 0.0,
        who or actor(), pd.Timestamp.now(tz="UTC").isoformat(),
    )  # fmt: skip
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, str(champ.version), "promotion.rolled_back_by", decision.actor)
    client.set_model_version_tag(name, previous, "promotion.restored_at", decision.at)
    return decision
