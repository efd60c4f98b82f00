"""System test of the champion/challenger bandit over real HTTP (``bentoml serve`` as a subprocess).

v1 (champion) and v2 (challenger) are the same small router registered twice, so the holdout
guardrail, at its default tolerance 0, sees an exact tie (the same model scores the same) and agrees;
the feedback is what makes v2 "better": actuals equal to v2's forecasts (reward 1), far off v1's. The
test is about the bandit's path through ``promote(force=False, who="bandit")``; the guardrail agreeing
with a genuinely better challenger and refusing a worse one, on an ``mlflow server``, is
test_serving_bandit_registry.py.
``STOCKML_SERVING__POLL_S=0``: no background poll, so the switch to v2 proves the service reloaded
by itself after promoting.
"""

from __future__ import annotations

import time

import httpx
import pytest
from mlflow import MlflowClient
from serving_helpers import (
    START_TIMEOUT_S,
    auth,
    bentoml_serve,
    forecast_items,
    register,
    service_env,
    train_and_configure,
)

from training.registry import mlflow_registry as reg

pytestmark = pytest.mark.slow

EXPERIMENT = "stockml-router-bandit-test"
USER, ADMIN = "bandit-user-1", "bandit-admin-1"
MIN_OUTCOMES = 30


@pytest.fixture(scope="module")
def service(router_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bandit")
    uri, model, holdout = train_and_configure(router_data, tmp, EXPERIMENT)
    for label in ("v1", "v2"):
        register(model, holdout, label)
        if label == "v1":
            assert reg.promote(version="1").promoted  # first champion; v2 then stays the challenger
    env = service_env(
        tmp,
        uri,
        f"{USER}:user,{ADMIN}:admin",
        isolate=(
            "STOCKML_SERVING__REDIS_URL",
            "STOCKML_AUTH__API_KEYS_FILE",
            "STOCKML_AUTH__DISABLED",
            "STOCKML_SERVING__DB_URL",
            "STOCKML_PROMOTION_TOLERANCE",
        ),
        STOCKML_SERVING__POLL_S="0",
        STOCKML_BANDIT__MIN_OUTCOMES=str(MIN_OUTCOMES),
    )
    log_path = tmp / "bentoml-serve.log"
    with bentoml_serve(env, log_path, port_flag="-p") as (proc, url):
        deadline = time.time() + START_TIMEOUT_S
        with httpx.Client(base_url=url, timeout=30, headers=auth(USER)) as c:
            while True:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"service did not come up: {log_path.read_text()[-3000:]}")
                try:
                    info = c.post("/model_info").json()
                    if (info["aliases"].get("challenger") or {}).get("version") == "2" and info["ready"]:
                        break
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.5)
        yield {"url": url, "uri": uri, "demand": router_data["demand"], "log": log_path, "home": tmp / "home"}


@pytest.fixture(scope="module")
def client(service):
    with httpx.Client(base_url=service["url"], headers=auth(USER), timeout=180) as c:
        yield c


def _feedback_for(body: dict) -> dict:
    """Actuals that v2 gets exactly right and v1 misses by far (reward near 0)."""
    items = []
    for it in body["items"]:
        good = it["model_version"] == "2"
        actuals = [
            {"ds": p["ds"], "y": max(0.0, p["yhat"]) if good else max(0.0, p["yhat"]) * 10 + 1000.0}
            for p in it["forecasts"]
        ]
        items.append({"forecast_id": it["forecast_id"], "actuals": actuals})
    return {"items": items}


def test_bandit_state_before_any_feedback(client):
    state = client.post("/bandit").json()
    assert state["champion"] == "1" and state["challenger"] == "2" and not state["stopped"]
    assert state["config"]["min_outcomes"] == MIN_OUTCOMES and state["config"]["promotion_tolerance"] == 0.0
    assert 0.4 < state["p_challenger_better"] < 0.6  # Beta(1, 1) vs Beta(1, 1)
    assert sum(state["traffic_shares"].values()) == pytest.approx(1.0)


def test_feedback_validation_and_idempotency(client, service):
    r = client.post("/forecast", json={"items": forecast_items(service["demand"], 2), "horizon": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] in {"1", "2"}
    assert {i["model_version"] for i in body["items"]} == {body["model_version"]}  # per-request routing
    fid = body["items"][0]["forecast_id"]
    week = body["items"][0]["forecasts"][0]["ds"]

    bad = client.post("/feedback", json={"items": [{"forecast_id": fid, "actuals": [{"ds": week, "y": -1.0}]}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "items[0].actuals[0].y"
    unknown = client.post("/feedback", json={"items": [{"forecast_id": "nope", "actuals": [{"ds": week, "y": 1.0}]}]})
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["forecast_id"] == "nope"

    one = {
        "items": [
            {"forecast_id": fid, "actuals": [{"ds": week, "y": 5.0}]},
            {"forecast_id": "nope", "actuals": [{"ds": week, "y": 1.0}]},
        ]
    }
    first = client.post("/feedback", json=one)
    assert first.status_code == 200, first.text
    got = first.json()
    assert got["items"][0]["counted"] == 1 and 0 < got["items"][0]["reward"] <= 1
    assert got["errors"] == [
        {"index": 1, "field": "items[1].forecast_id", "forecast_id": "nope", "error": "unknown forecast_id"}
    ]
    n_before = got["bandit"]["posteriors"][body["model_version"]]["n"]
    again = client.post("/feedback", json=one).json()
    assert again["items"][0]["counted"] == 0 and again["items"][0]["duplicates"] == 1
    assert again["bandit"]["posteriors"][body["model_version"]]["n"] == n_before  # counted once


def test_bandit_promotes_the_better_challenger(client, service):
    t0 = time.perf_counter()
    payload = {"items": forecast_items(service["demand"], 3), "horizon": 4}
    served: dict[str, int] = {}
    promoted = None
    for _ in range(60):
        r = client.post("/forecast", json=payload)
        assert r.status_code == 200, r.text
        body = r.json()
        served[body["model_version"]] = served.get(body["model_version"], 0) + 1
        fb = client.post("/feedback", json=_feedback_for(body))
        assert fb.status_code == 200, fb.text
        decision = fb.json()["decision"]
        if decision and decision["action"] == "promote":
            promoted = fb.json()
            break
        assert decision is None or decision["action"] != "promote_failed", decision
    print(f"\nrequests served per version before the promotion: {served}; {time.perf_counter() - t0:.1f} s")
    assert promoted is not None, client.post("/bandit").json()
    decision = promoted["decision"]
    assert decision["p_better"] > 0.95 and decision["challenger"]["n"] >= MIN_OUTCOMES
    assert decision["guardrail"]["promoted"] and decision["challenger"]["version"] == "2"
    assert "within tolerance 0.0%" in decision["guardrail"]["reason"]  # the tie, at the default tolerance

    # MLflow: champion -> v2, by the bandit, with the evidence as tags
    reg.configure(service["uri"], EXPERIMENT)
    mv = MlflowClient().get_model_version_by_alias(reg.MODEL_NAME, reg.CHAMPION)
    assert str(mv.version) == "2"
    assert mv.tags["promotion.actor"] == "bandit" and mv.tags["promotion.forced"] == "False"
    assert mv.tags["bandit.decision"] == "promoted" and float(mv.tags["bandit.p_challenger_better"]) > 0.95
    assert int(mv.tags["bandit.n"]) >= MIN_OUTCOMES and mv.tags["bandit.posterior"].startswith("Beta(")

    # the service reloaded by itself (no poll): v2 serves, no challenger is left to route to
    info = client.post("/model_info").json()
    assert info["aliases"]["champion"]["version"] == "2" and info["aliases"]["challenger"] is None
    state = client.post("/bandit").json()
    assert state["champion"] == "2" and state["challenger"] is None
    assert state["traffic_shares"] == {"champion": 1.0, "challenger": 0.0}
    assert [d["action"] for d in state["decisions"]][-1] == "promote"
    for _ in range(5):
        assert client.post("/forecast", json=payload).json()["model_version"] == "2"
    assert "Traceback" not in service["log"].read_text()
    assert (service["home"] / "serving.db").exists()
