"""The service against a real ``mlflow server`` (PostgreSQL backend store, artifacts served by the server).

Production's layout, nothing faked: ``mlflow server`` runs as a subprocess on a throw-away database of
the machine's PostgreSQL (``tests/support/mlflow_server.py``), the router is logged and registered
through its REST API (artifacts uploaded through the server's proxy), and ``bentoml serve`` loads
``models:/stockml-router@champion`` from it over HTTP. The tests run in file order on one stack:

1. the service serves the champion, and the registry really lives in Postgres and the server's folder;
2. the ``champion`` alias moves: the service follows it (poll every 2 s) and ``/admin/reload`` agrees;
3. the server is killed (SIGKILL): forecasts keep coming from the loaded champion, ``/readyz`` stays 200,
   ``/model_info`` and ``/admin/reload`` report the registry error;
4. the server is started again on the same port: polling resumes, a new alias move is followed.
"""

from __future__ import annotations

import time

import httpx
import mlflow
import psycopg
import pytest
from mlflow import MlflowClient
from mlflow_server import postgres_mlflow_server
from serving_helpers import START_TIMEOUT_S, auth, bentoml_serve, forecast_items, register, service_env, wait_ready

from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel
from training.router.train import train_router

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EXPERIMENT = "stockml-router-server-test"
USER, ADMIN = "srv-user-1", "srv-admin-1"
FOLLOW_S = 120  # the most a move may take to be followed (poll 2 s + loading the version) before the test fails


@pytest.fixture(scope="module")
def stack(router_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-server")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with postgres_mlflow_server(tmp) as server:
        t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
        model = RouterModel.from_training(t)
        skus = list(t.holdout_forecasts["unique_id"].unique())[:10]
        holdout = reg.split_holdout(router_data["demand"], t.holdout_cutoff, t.horizon, skus)
        reg.configure(server.url, EXPERIMENT)
        versions = [register(model, holdout, label) for label in ("v1", "v2")]
        assert [v.version for v in versions] == ["1", "2"]
        assert reg.promote(version="1").promoted
        # v2 waits in the registry without an alias: one model serves (no bandit split) until the champion moves
        MlflowClient().delete_registered_model_alias(reg.MODEL_NAME, reg.CHALLENGER)
        env = service_env(tmp, server.url, f"{USER}:user,{ADMIN}:admin", STOCKML_SERVING__POLL_S="2")
        log_path = tmp / "bentoml-serve.log"
        with bentoml_serve(env, log_path) as (proc, url):
            wait_ready(url, proc, log_path, timeout=START_TIMEOUT_S)
            yield {"server": server, "url": url, "log": log_path, "demand": router_data["demand"], "tmp": tmp}
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack["url"], headers=auth(USER), timeout=120) as c:
        yield c


def _forecast(client: httpx.Client, demand) -> dict:
    r = client.post("/forecast", json={"items": forecast_items(demand, 2), "horizon": 3})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_info(client: httpx.Client, what: str, ok) -> dict:
    """/model_info once ``ok(info)`` holds; fails naming ``what`` and the last answer after FOLLOW_S."""
    deadline = time.time() + FOLLOW_S
    while True:
        info = client.post("/model_info").json()
        if ok(info):
            return info
        if time.time() > deadline:
            pytest.fail(f"{what} not seen within {FOLLOW_S} s; last /model_info: {info}")
        time.sleep(0.5)


def test_the_service_serves_the_champion_of_a_postgres_backed_server(stack, client):
    info = client.post("/model_info").json()
    assert info["ready"] and info["aliases"]["champion"]["version"] == "1" and info["last_error"] is None
    assert _forecast(client, stack["demand"])["model_version"] == "1"
    # the registry is in Postgres (the server's backend store), the artifacts behind the server's proxy
    backend = stack["server"].backend_uri.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(backend) as conn:
        alias = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", (reg.MODEL_NAME,)
        ).fetchone()
        n_versions = conn.execute("SELECT count(*) FROM model_versions WHERE name = %s", (reg.MODEL_NAME,)).fetchone()
    assert alias == (1,) and n_versions == (2,)
    run = MlflowClient().get_run(info["aliases"]["champion"]["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    served = stack["tmp"] / "served-artifacts"
    assert any(p.name == "manifest.json" for p in served.rglob("manifest.json")), "no model files behind the server"


def test_the_service_follows_the_champion_alias(stack, client):
    MlflowClient().set_registered_model_alias(reg.MODEL_NAME, reg.CHAMPION, "2")
    _wait_info(client, "champion v2 after the alias move", lambda i: i["aliases"]["champion"]["version"] == "2")
    assert _forecast(client, stack["demand"])["model_version"] == "2"
    r = client.post("/admin/reload", headers=auth(ADMIN), json={})
    assert r.status_code == 200, r.text
    assert r.json()["versions"]["champion"] == "2" and not r.json()["aliases"]["champion"]["changed"]


def test_with_the_registry_down_the_loaded_champion_keeps_serving(stack, client):
    stack["server"].kill()
    assert not stack["server"].healthy()
    info = _wait_info(client, "the registry error in /model_info", lambda i: i["last_error"])
    assert "registry" in info["last_error"] and info["aliases"]["champion"]["version"] == "2", info
    assert info["ready"]
    assert client.get("/readyz").status_code == 200
    for _ in range(3):
        assert _forecast(client, stack["demand"])["model_version"] == "2"
    r = client.post("/admin/reload", headers=auth(ADMIN), json={})
    assert r.status_code == 200, r.text  # still ready: the answer carries the error, not a 5xx
    body = r.json()
    assert body["versions"]["champion"] == "2" and "registry" in body["error"]
    assert "error" in body["aliases"]["champion"]
    assert "Traceback" not in stack["log"].read_text()


def test_alias_polling_resumes_when_the_server_is_back(stack, client):
    server = stack["server"]
    server.start()  # same port, same Postgres database and artifact folder
    MlflowClient().set_registered_model_alias(reg.MODEL_NAME, reg.CHAMPION, "1")
    info = _wait_info(
        client,
        "champion v1 after the server came back",
        lambda i: i["aliases"]["champion"]["version"] == "1" and i["last_error"] is None,
    )
    assert info["ready"]
    assert _forecast(client, stack["demand"])["model_version"] == "1"
