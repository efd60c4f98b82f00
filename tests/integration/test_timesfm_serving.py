"""A registered router whose members include TimesFM, loaded by the service's model watcher from a real
(embedded SQLite) MLflow registry: refused, with the missing checkpoint named, where the checkpoint is
absent (the loaded champion, if any, keeps serving); loaded and forecasting once it is there."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from timesfm_checkpoint import router_with_timesfm, write_tiny_checkpoint

from serving.bentos.models import ModelWatcher, warmup_history
from training.forecasting import foundation
from training.registry import mlflow_registry as reg

NAME = "stockml-router-timesfm-test"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("timesfm-registry")
    checkpoint = write_tiny_checkpoint(tmp / "timesfm-2.5")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(foundation, "_WHERE", foundation._Where(checkpoint, tmp / "hf-cache"))
        # configured while registering too: logging the model forecasts an input example, and the
        # example SKU may be routed to TimesFM
        model, t, demand = router_with_timesfm(checkpoint)
        skus = list(t.holdout_forecasts["unique_id"].unique())[:5]
        holdout = reg.split_holdout(demand, t.holdout_cutoff, t.horizon, skus)
        reg.configure(f"sqlite:///{tmp / 'mlflow.db'}", "stockml-timesfm-test", tmp / "artifacts")
        v = reg.log_router(model, params={}, metrics={}, tags={}, holdout=holdout, name=NAME)
    MlflowClient().set_registered_model_alias(NAME, reg.CHAMPION, v.version)
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
