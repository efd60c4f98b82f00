"""A registered router whose members include TimesFM, loaded by the service's model watcher from a real
(embedded SQLite) MLflow registry: refused, with the missing checkpoint named, where the checkpoint is
absent (the loaded champion, if any, keeps serving); loaded and forecasting once it is there."""

from __future__ import annotations

import mlflow
import pytest
from timesfm_checkpoint import register_timesfm_router

from serving.bentos.models import ModelWatcher, warmup_history
from training.forecasting import foundation

NAME = "stockml-router-timesfm-test"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timesfm-registry")
    checkpoint, uri, _ = register_timesfm_router(tmp, "stockml-timesfm-test", NAME)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield checkpoint
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_the_watcher_refuses_a_timesfm_router_without_the_checkpoint_then_loads_it(registered, tmp_path, monkeypatch):
    monkeypatch.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path / "hf-cache"))  # nothing here
    w = ModelWatcher(NAME, poll_s=0)
    report = w.refresh()
    assert w.champion is None and report["champion"]["changed"] is False
    assert "MemberUnavailableError" in w.last_error and "['TimesFM']" in w.last_error
    assert "no checkpoint configured (set STOCKML_TIMESFM_CHECKPOINT)" in w.last_error
    foundation.configure(registered)  # the operator sets STOCKML_TIMESFM_CHECKPOINT and reloads
    report = w.refresh(force=True)
    assert report["champion"]["changed"] is True and w.last_error is None
    fc = w.champion.predict(warmup_history(), horizon=3)
    assert len(fc) > 0 and fc["yhat"].notna().all()
