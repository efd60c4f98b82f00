"""Pieces shared by the router and zoo tuners: storage, studies, quiet logging, MLflow tracking."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

LOG = logging.getLogger("stockml.automl")
BASELINE_ATTR = "baseline"  # trial user attribute marking the enqueued default-parameter trial
IN_MEMORY = "in-memory"


def prepare_storage(storage: str | None) -> str | None:
    """Create the folder of a SQLite database file; other URLs (Postgres, ...) pass through."""
    if storage:
        url = make_url(storage)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return storage


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines for the duration; restore the caller's verbosity after."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


@contextmanager
def omp_threads(n_threads: int | None) -> Iterator[None]:
    """Cap OpenMP threads (XGBoost's) in this thread for the duration; ``None`` leaves them alone.

    Tuning fits many small boosters one after the other: on 2 cores a 2,000-row FFORMA fit takes
    the same ~3 s with 1 or 2 threads, but when another process keeps the cores busy, OpenMP's
    spinning threads made the 2-thread fit 25-35x slower (83-116 s) while the 1-thread fit stayed at ~3 s.
    """
    if n_threads is None:
        yield
        return
    with threadpool_limits(limits=n_threads, user_api="openmp"):
        yield


@contextmanager
def rdb_storage(url: str | None) -> Iterator[optuna.storages.RDBStorage | None]:
    """Optuna's RDB storage for ``url`` (``None``: in memory), its connections closed on exit."""
    if url is None:
        yield None
        return
    storage = optuna.storages.RDBStorage(prepare_storage(url))
    try:
        yield storage
    finally:
        storage.remove_session()
        storage.engine.dispose()


def open_study(
    *,
    storage: optuna.storages.BaseStorage | str | None,
    study_name: str,
    seed: int,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists (a re-run continues it)."""
    return optuna.create_study(
        storage=prepare_storage(storage) if isinstance(storage, str) else storage,
        study_name=study_name,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.NopPruner(),
    )


def _is_baseline(t: FrozenTrial) -> bool:
    return bool(t.user_attrs.get(BASELINE_ATTR))


def enqueue_baseline(study: optuna.Study, params: dict[str, Any]) -> None:
    """Queue the default parameters as the next trial unless the study already has (or queues) them."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))
    if not any(_is_baseline(t) for t in done):
        study.enqueue_trial(params, user_attrs={BASELINE_ATTR: True})


def baseline_value(study: optuna.Study) -> float:
    """The default parameters' score (NaN when the baseline trial did not complete)."""
    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _is_baseline(t)]
    return float(min(values)) if values else float("nan")


def check_fingerprint(study: optuna.Study, fingerprint: dict[str, Any]) -> None:
    """Remember what the study was tuned on; warn when a continued study sees different data."""
    previous = study.user_attrs.get("fingerprint")
    if previous is None:
        study.set_user_attr("fingerprint", fingerprint)
    elif previous != fingerprint:
        LOG.warning(
            "study %r was started on %s, now continued on %s: its earlier trial values may not be comparable",
            study.study_name,
            previous,
            fingerprint,
        )


@dataclass
class TrialLog:
    """An Optuna callback collecting the trials finished during one ``optimize`` call."""

    trials: list[FrozenTrial] = field(default_factory=list)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.trials.append(trial)

    def count(self, state: TrialState | None = None) -> int:
        return sum(1 for t in self.trials if state is None or t.state == state)


@dataclass
class Tracking:
    """MLflow side of a study: the callbacks for ``optimize`` and the parent run, when tracking is on."""

    callbacks: list = field(default_factory=list)
    run_id: str | None = None

    def summary(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """Log the study's outcome on the parent run (best parameters as ``best_*`` params)."""
        if self.run_id is None:
            return
        import mlflow

        mlflow.log_params({f"best_{k}": v for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # NaN-free


@contextmanager
def mlflow_tracking(
    tracking_uri: str | None, experiment: str, run_name: str, metric_name: str = "cv_mase"
) -> Iterator[Tracking]:
    """One parent MLflow run for the study; every trial becomes a nested run (params, value, state tag).

    Uses optuna-integration's ``MLflowCallback`` (deprecated since optuna-integration 4.9 and
    moving to OptunaHub, but working with MLflow 3.17). The caller's active experiment is left
    alone (runs go to ``experiment`` by id) and its tracking URI is restored afterwards. Inside a
    caller's active run (a pipeline run) the study's run nests under it.
    """
    if tracking_uri is None:
        yield Tracking()
        return
    import mlflow
    from optuna_integration import MLflowCallback

    previous_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its deprecation notice
        callback = MLflowCallback(
            tracking_uri=tracking_uri,
            metric_name=metric_name,
            create_experiment=False,
            mlflow_kwargs={"nested": True, "experiment_id": experiment_id},
            tag_trial_user_attrs=True,
        )
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            nested=mlflow.active_run() is not None,
            tags={"stockml.automl": "study"},
        ) as run:
            yield Tracking(callbacks=[callback], run_id=run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous_uri)  # None: back to "not set" (MLflow's default store)
