"""``stockml-lstm`` on a real registry: log → register (challenger) → promote through the router's guardrail
→ load by ``models:/…@champion`` → the same forecasts as the member in process; a second version judged
against the champion on the stored holdout, and rollback. Once on an embedded SQLite store and once
through a real ``mlflow server`` process. A tiny network (a few training steps): seconds, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_server import MlflowServer

from training.forecasting.zoo import ModelZoo
from training.registry import mlflow_registry as reg
from training.registry.member_model import MemberModel

NAME = "stockml-lstm-test"
H = 4
TINY = {
    "max_steps": 5, "val_check_steps": 5, "input_size": 16, "batch_size": 8, "windows_batch_size": 16,
    "encoder_hidden_size": 8, "decoder_hidden_size": 8, "encoder_n_layers": 1,
}  # fmt: skip


def _demand(n_ids: int = 8, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    for i in range(n_ids):
        t = np.arange(n)
        y = rng.poisson((1 + i) * (1 + 0.5 * np.sin(2 * np.pi * t / 13)))
        ds = pd.date_range("2025-01-06", periods=n, freq="W-MON")
        frames.append(pd.DataFrame({"unique_id": f"P{i}", "ds": ds, "y": y.astype("int64")}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def data():
    demand = _demand()
    cutoff = demand["ds"].max() - pd.Timedelta(weeks=H)
    return reg.split_holdout(demand, cutoff, H)


def _fit(history: pd.DataFrame, seed: int) -> MemberModel:
    zoo = ModelZoo(["LSTM"], params={"LSTM": {**TINY, "random_seed": seed}}, horizon=H).fit(history)
    return MemberModel(zoo, {"data_end": str(history["ds"].max().date())})


def _log(model: MemberModel, holdout, label: str) -> reg.RegisteredVersion:
    hist, actual = holdout
    score = reg.forecast_score(model.predict(hist, H), hist, actual)
    return reg.log_member(
        model, name=NAME, params={"label": label, **TINY}, metrics={"holdout_mase": score},
        tags={"data_end": model.info["data_end"]}, holdout=holdout, run_name=label,
    )  # fmt: skip


def _workflow(data, tracking_uri: str, artifacts: Path) -> None:
    hist, _actual = data
    reg.configure(tracking_uri, NAME, artifacts)
    client = MlflowClient()

    first = _fit(hist, seed=1)
    v1 = _log(first, data, "first")
    assert str(client.get_model_version_by_alias(NAME, reg.CHALLENGER).version) == v1.version
    tags = client.get_model_version(NAME, v1.version).tags
    assert tags["git_commit"] and tags["data_end"] == str(hist["ds"].max().date())
    assert float(tags["holdout_mase"]) > 0
    run = client.get_run(v1.run_id)
    assert run.data.metrics["holdout_mase"] == pytest.approx(float(tags["holdout_mase"]), abs=1e-4)

    # The stored model is data: a manifest naming the member and a torch state_dict with its JSON config.
    local = Path(mlflow.artifacts.download_artifacts(v1.alias_uri, dst_path=str(artifacts / "dl")))
    manifest = json.loads(next(local.rglob("manifest.json")).read_text())
    assert manifest["format"] == "stockml-member" and manifest["method"] == "LSTM"
    state = manifest["members"][0]["state"]
    assert state["weights"] == "weights.pt" and state["params"]["encoder_hidden_size"] == 8
    assert next(local.rglob("weights.pt")).stat().st_size > 0
    assert not list(local.rglob("*.pkl")) and not list(local.rglob("*.ckpt"))

    promoted = reg.promote(NAME)
    assert promoted.promoted and promoted.reason == "first champion"
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@{reg.CHAMPION}")
    served = champion.predict(hist, params={"horizon": H})
    in_process = first.predict(hist, H)
    pd.testing.assert_frame_equal(served, in_process, check_exact=False, rtol=1e-5, atol=1e-6)
    assert len(served) == hist["unique_id"].nunique() * H
    assert (served["lo95"] <= served["lo80"]).all() and (served["lo80"] <= served["yhat"]).all()
    assert (served["yhat"] <= served["hi80"]).all() and (served["hi80"] <= served["hi95"]).all()
    # The member in process, without the registry's wrapper, forecasts the same points.
    raw = first.zoo.fitted_["LSTM"].predict(H, (80, 95), panel=hist)
    np.testing.assert_allclose(served["yhat"], raw["yhat"].clip(lower=0), rtol=1e-5, atol=1e-6)

    # A second version is judged against the champion on its stored holdout (the router's guardrail).
    v2 = _log(_fit(hist, seed=2), data, "second")
    decision = reg.promote(NAME, tolerance=0.0)
    assert decision.candidate == v2.version and decision.previous_champion == v1.version
    assert np.isfinite(decision.candidate_score) and np.isfinite(decision.champion_score)
    assert decision.promoted == (decision.candidate_score <= decision.champion_score + 1e-12)
    assert decision.champion_score == pytest.approx(float(tags["holdout_mase"]), abs=1e-4)
    expected_champion = v2.version if decision.promoted else v1.version
    assert str(client.get_model_version_by_alias(NAME, reg.CHAMPION).version) == expected_champion
    if not decision.promoted:
        reg.promote(NAME, v2.version, force=True, who="test-suite")
    back = reg.rollback(NAME)
    assert back.candidate == v1.version
    assert str(client.get_model_version_by_alias(NAME, reg.CHAMPION).version) == v1.version


def test_lstm_registry_round_trip_on_embedded_sqlite(data, tmp_path):
    _workflow(data, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")


@pytest.mark.slow
def test_lstm_registry_round_trip_through_a_real_mlflow_server(data, tmp_path):
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts", tmp_path / "server.log")
    server.start()
    try:
        _workflow(data, server.url, tmp_path)
    finally:
        server.stop()


def test_member_model_refuses_bad_input(data):
    hist, _ = data
    model = _fit(hist, seed=1)
    from training.router.predict import HistoryError

    with pytest.raises(HistoryError, match="trained horizon"):
        model.predict(hist, H + 1)
    with pytest.raises(HistoryError, match="missing column"):
        model.predict(hist.drop(columns="y"), H)
    with pytest.raises(ValueError, match="exactly one fitted member"):
        MemberModel(ModelZoo(["LSTM", "NHITS"]))
