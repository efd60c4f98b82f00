"""The service's model watcher on a real (embedded SQLite) MLflow registry: real versions, real aliases,
real ``mlflow.pyfunc`` loads; a broken version is one whose artifacts were really deleted.

(These replaced a fake MLflow client and a fake pyfunc loader. Over HTTP, with ``mlflow server`` and
``bentoml serve``, the same behaviour is tested in tests/system/test_serving_mlflow_server.py.)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest
from mlflow import MlflowClient

from serving.bentos.models import ModelWatcher, warmup_history
from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel
from training.router.train import train_router

NAME = "stockml-router-watcher-test"


@pytest.fixture(scope="module")
def registry(router_data, tmp_path_factory):
    """Three versions of one router in a fresh SQLite registry, no alias set; v3's artifacts deleted."""
    tmp = tmp_path_factory.mktemp("watcher-registry")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    model = RouterModel.from_training(t)
    skus = list(t.holdout_forecasts["unique_id"].unique())[:5]
    holdout = reg.split_holdout(router_data["demand"], t.holdout_cutoff, t.horizon, skus)
    reg.configure(f"sqlite:///{tmp / 'mlflow.db'}", "stockml-watcher-test", tmp / "artifacts")
    client = MlflowClient()
    for k in (1, 2, 3):
        v = reg.log_router(model, params={}, metrics={}, tags={}, holdout=holdout, name=NAME)
        assert v.version == str(k)
    client.delete_registered_model_alias(NAME, reg.CHALLENGER)
    model_id = v.model_uri.removeprefix("models:/")  # v3's logged model ("models:/m-<id>")
    location = Path(urlparse(mlflow.get_logged_model(model_id).artifact_location).path)
    assert location.is_dir(), location
    shutil.rmtree(location)  # the registry still lists v3; its files are gone
    yield client
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def _alias(client: MlflowClient, alias: str, version: str | None) -> None:
    if version is None:
        client.delete_registered_model_alias(NAME, alias)
    else:
        client.set_registered_model_alias(NAME, alias, version)


def test_watcher_loads_swaps_and_keeps_serving_on_failure(registry):
    client = registry
    w = ModelWatcher(NAME, poll_s=0)
    assert w.refresh()["champion"]["changed"] is False and w.champion is None and "no 'champion'" in w.last_error

    _alias(client, "champion", "1")
    _alias(client, "challenger", "2")
    report = w.refresh()
    assert report["champion"] == {"from": None, "to": "1", "changed": True}
    assert w.versions() == {"champion": "1", "challenger": "2"} and w.last_error is None
    held = w.champion  # a request in flight keeps its reference through a swap

    _alias(client, "champion", "2")  # challenger promoted
    _alias(client, "challenger", None)
    report = w.refresh()
    assert report["champion"]["changed"] and w.versions() == {"champion": "2", "challenger": None}
    assert held.version == "1" and w.champion.version == "2"
    assert not held.predict(warmup_history(), 3).empty  # the old version still forecasts for whoever holds it

    _alias(client, "champion", "3")  # broken version: not swapped in, error reported
    report = w.refresh()
    assert not report["champion"]["changed"] and report["champion"]["error"]
    assert w.champion.version == "2" and "v3" in w.last_error

    _alias(client, "champion", None)  # alias deleted: keep serving what is loaded
    w.refresh()
    assert w.champion.version == "2" and "no 'champion'" in w.last_error
    assert w.refresh(force=False)["champion"]["to"] == "2"


def test_watcher_polls_in_the_background(registry):
    client = registry
    _alias(client, "champion", "1")
    w = ModelWatcher(NAME, poll_s=0.2)
    w.start()
    try:
        deadline = time.time() + 120
        while w.champion is None and time.time() < deadline:
            time.sleep(0.05)
        assert w.champion is not None and w.champion.version == "1"
        _alias(client, "champion", "2")
        while w.champion.version != "2" and time.time() < deadline:
            time.sleep(0.05)
        assert w.champion.version == "2"
    finally:
        w.stop()
