"""The MLflow registry workflow on a real registry: log → register → load by alias → predict,
promotion guardrails, force, rollback; once on an embedded SQLite store and once through a
real ``mlflow server`` process on a free port (``tests/support/mlflow_server.py``; the Postgres-backed
server in front of the service is in tests/system/test_serving_mlflow_server.py).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow_server import MlflowServer

from training.registry import mlflow_registry as reg
from training.router.model import ForecastRouter
from training.router.predict import RouterModel
from training.router.train import BlendPolicy, router_features, train_router

NAME = "stockml-router-test"


@pytest.fixture(scope="module")
def models(router_data):
    """A trained router and a deliberately bad one (always Naive2), with their shared holdout."""
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    good = RouterModel.from_training(t)
    # A router trained to believe Naive2 always wins: it ignores what the series look like.
    feats = router_features(router_data["demand"], 52, t.rule)
    errors = pd.DataFrame(1.0, index=feats.index, columns=t.router.methods_)
    errors["Naive2"] = 0.0
    bad = RouterModel.from_training(t)
    bad.router = ForecastRouter(mode="select", n_estimators=5).fit(feats, errors)
    bad.policy = BlendPolicy("select")
    skus = list(t.holdout_forecasts["unique_id"].unique())[:25]
    holdout = reg.split_holdout(router_data["demand"], t.holdout_cutoff, t.horizon, skus)
    return good, bad, holdout


def _log(model: RouterModel, holdout, label: str, artifacts: dict | None = None) -> reg.RegisteredVersion:
    return reg.log_router(
        model,
        params={"label": label},
        metrics={"holdout_mase_router": 1.0},
        tags={"data_end": "2026-11-22", "label": label},
        holdout=holdout,
        name=NAME,
        run_name=label,
        artifacts=artifacts,
    )


def _workflow(models, tracking_uri: str, artifacts: Path) -> None:
    good, bad, holdout = models
    reg.configure(tracking_uri, "stockml-router-test", artifacts)
    client = MlflowClient()

    # the drift check's reference rows travel with the model; a model logged without them reads as None
    ref_dir = artifacts.parent / "drift_reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    reference = pd.DataFrame({"level_yoy": [0.5, -1.0]}, index=pd.Index(["A", "B"], name="unique_id"))
    reference.to_parquet(ref_dir / reg.DRIFT_REFERENCE_FILE)
    v_good = _log(good, holdout, "good", {reg.DRIFT_REFERENCE_DIR: ref_dir})
    pd.testing.assert_frame_equal(reg.load_drift_reference(v_good.run_id), reference)
    assert str(client.get_model_version_by_alias(NAME, reg.CHALLENGER).version) == v_good.version
    version = client.get_model_version(NAME, v_good.version)
    assert version.tags["git_commit"] and version.tags["data_end"] == "2026-11-22"
    run = client.get_run(v_good.run_id)
    assert run.data.tags["git_commit"] and run.data.params["label"] == "good"

    first = reg.promote(NAME, tolerance=0.0)
    assert first.promoted and first.reason == "first champion"
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@{reg.CHAMPION}")
    hist, _actual = holdout
    fc = champion.predict(hist, params={"horizon": 5})
    assert len(fc) == hist["unique_id"].nunique() * 5
    assert {"yhat", "lo80", "hi95", "method", "confidence", "explanation"} <= set(fc.columns)
    assert fc[["yhat", "lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    # Unit counts are integers: the signature takes int64 as well as float64 demand, same forecasts.
    as_int = champion.predict(hist.assign(y=hist["y"].round().astype("int64")), params={"horizon": 5})
    as_float = champion.predict(hist.assign(y=hist["y"].round().astype("float64")), params={"horizon": 5})
    pd.testing.assert_frame_equal(as_int, as_float)
    # The registered model is data: a manifest listing its members with their packages and versions.
    members = reg.model_members(f"models:/{NAME}@{reg.CHAMPION}")
    assert {m["method"] for m in members} == set(good.router.methods_)
    assert all(m["package"] and m["package_version"] and m["class"] for m in members)

    # A worse candidate is refused, and the refusal is on record.
    v_bad = _log(bad, holdout, "bad")
    assert reg.load_drift_reference(v_bad.run_id) is None
    refused = reg.promote(NAME, tolerance=0.0)
    assert not refused.promoted
    assert refused.candidate_score > refused.champion_score
    assert str(client.get_model_version_by_alias(NAME, reg.CHAMPION).version) == v_good.version
    tags = client.get_model_version(NAME, v_bad.version).tags
    assert tags["promotion.promoted"] == "False" and "beyond tolerance" in tags["promotion.reason"]
    assert tags["promotion.actor"]

    # --force moves the alias anyway and says so; rollback moves it back.
    forced = reg.promote(NAME, v_bad.version, force=True, who="test-suite")
    assert forced.promoted and forced.forced
    assert str(client.get_model_version_by_alias(NAME, reg.CHAMPION).version) == v_bad.version
    assert client.get_model_version(NAME, v_bad.version).tags["promotion.actor"] == "test-suite"
    back = reg.rollback(NAME)
    assert back.candidate == v_good.version
    assert str(client.get_model_version_by_alias(NAME, reg.CHAMPION).version) == v_good.version

    with pytest.raises(reg.PromotionError, match="no version 99"):
        reg.promote(NAME, "99")


def test_registry_workflow_on_embedded_sqlite(models, tmp_path):
    _workflow(models, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` process (SQLite backend, artifacts served by the server) on a free port."""
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts", tmp_path / "server.log")
    server.start()
    yield server.url
    server.stop()


@pytest.mark.slow
def test_registry_workflow_through_a_real_mlflow_server(models, mlflow_server, tmp_path):
    _workflow(models, mlflow_server, tmp_path / "unused")
    # The server really holds it: ask its REST API directly.
    r = requests.get(
        f"{mlflow_server}/api/2.0/mlflow/registered-models/alias", params={"name": NAME, "alias": "champion"}
    )
    assert r.ok and str(r.json()["model_version"]["version"]) == "1"


def test_the_promotion_operator_tells_ops_of_a_refusal(models, tmp_path, monkeypatch):
    """``MlflowPromoteOperator`` on a real registry: the guardrail refuses a worse candidate (the task does
    not fail, the champion stays) and one ``promotion_refused`` alert reaches the webhook, the deliveries in
    the XCom. The webhook is a local ``http.server`` given as the Airflow connection's variable."""
    import json
    import multiprocessing as mp
    from types import SimpleNamespace

    from receivers import http_receiver

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "plugins"))
    from stockml_airflow.operators import MlflowPromoteOperator

    good, bad, holdout = models
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STOCKML_MLFLOW_TRACKING_URI", uri)
    reg.configure(uri, "stockml-router-test", tmp_path / "artifacts")
    _log(good, holdout, "good")
    assert reg.promote(NAME).promoted
    v_bad = _log(bad, holdout, "bad")
    start_method = mp.get_start_method(allow_none=True)  # the operator switches this process to forkserver
    try:
        with http_receiver() as hook:
            monkeypatch.setenv("AIRFLOW_CONN_STOCKML_ALERT_WEBHOOK", hook.url)
            context = {"dag": SimpleNamespace(dag_id="stock_training"), "run_id": "manual__alert"}
            result = MlflowPromoteOperator(task_id="promote", model_name=NAME).execute(context)
    finally:
        mp.set_start_method(start_method, force=True)
    assert not result["promoted"] and [(d["channel"], d["ok"]) for d in result["alerts"]] == [("webhook", True)]
    (got,) = hook.requests
    text = json.loads(got.body)["text"]
    assert text.startswith(f"[warning] stockml: promotion of {NAME} v{v_bad.version} refused: Promotion refused:")
    assert "v1 stays champion (holdout MASE" in text and "beyond tolerance 0.0%" in text
