"""The bandit's promotions through the real guardrail, against a real registry, with the defaults.

Nothing is faked and no knob is turned: ``mlflow server`` on a throw-away PostgreSQL database with
artifacts served by the server (``tests/support/mlflow_server.py``), ``bentoml serve`` on it, the
bandit's and the promotion guardrail's settings at their defaults (``STOCKML_BANDIT__*`` unset:
200 challenger outcomes, P > 0.95; ``STOCKML_PROMOTION_TOLERANCE`` unset: 0), except the tolerance in
the last class, which is what it tests. Feedback comes through ``/feedback`` with actuals.

The models differ for real, on the holdout the guardrail scores them on (the 10 SKUs' last 8 weeks,
stored with each version's run):

- **good**: the router trained on the backtest;
- **poor**: the same router told to forecast every SKU with CrostonSBA alone (about 30 % worse MASE);
- **slightly worse**: the good router's weights pulled 30 % towards CrostonSBA (a few % worse).

1. Defaults, poor champion v1, good challenger v2, feedback = the SKUs' true demand in those 8 weeks:
   the bandit sees v2 earn more, asks, the guardrail agrees (v2 really is better), v2 becomes champion.
2. Same service, slightly worse v3 as the new challenger, feedback that flatters it (its own forecasts
   as actuals, the champion gets the true demand): the bandit asks, the guardrail at tolerance 0 refuses,
   and the refusal and its figures are tags on v3; the champion stays.
3. A tolerance of 5 %: the same kind of slightly worse challenger is let through, and the tags record the
   tolerance and that it was within it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_server import postgres_mlflow_server
from serving_helpers import START_TIMEOUT_S, auth, bentoml_serve, forecast_items, service_env

from training.registry import mlflow_registry as reg
from training.router.predict import RouterModel
from training.router.train import BlendPolicy, train_router

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EXPERIMENT = "stockml-router-bandit-registry-test"
USER, ADMIN = "bandit-reg-user", "bandit-reg-admin"
POOR_METHOD = "CrostonSBA"
SLIGHT_SHRINK = 0.3
TOLERANCE = 0.05
MAX_ROUNDS = 60  # /forecast + /feedback rounds before a test gives up on a decision
SKUS, HORIZON = 10, 8
# the caller's settings that would change what the bandit or the guardrail does: unset, so the defaults hold
UNSET = (
    "STOCKML_SERVING__REDIS_URL", "STOCKML_AUTH__API_KEYS_FILE", "STOCKML_AUTH__DISABLED", "STOCKML_SERVING__DB_URL",
    "STOCKML_PROMOTION_TOLERANCE", "STOCKML_BANDIT", "STOCKML_BANDIT__MIN_OUTCOMES",
    "STOCKML_BANDIT__MIN_STOP_OUTCOMES", "STOCKML_BANDIT__P_PROMOTE", "STOCKML_BANDIT__P_STOP",
)  # fmt: skip


@pytest.fixture(scope="module")
def world(router_data, tmp_path_factory):
    """The server, the three models and the holdout (history up to the cutoff, the 8 weeks after)."""
    tmp = tmp_path_factory.mktemp("bandit-registry")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    good = RouterModel.from_training(t)
    assert POOR_METHOD in t.router.methods_
    poor = dataclasses.replace(good, policy=BlendPolicy("select", anchor=POOR_METHOD, shrink=1.0))
    slight = dataclasses.replace(
        good, policy=dataclasses.replace(good.policy, anchor=POOR_METHOD, shrink=SLIGHT_SHRINK)
    )
    skus = list(t.holdout_forecasts["unique_id"].unique())[:SKUS]
    history, actuals = reg.split_holdout(router_data["demand"], t.holdout_cutoff, HORIZON, skus)
    assert (actuals.groupby("unique_id").size() == HORIZON).all()
    with postgres_mlflow_server(tmp) as server:
        reg.configure(server.url, EXPERIMENT)
        yield {
            "server": server,
            "tmp": tmp,
            "models": {"good": good, "poor": poor, "slight": slight},
            "holdout": (history, actuals),
        }
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def _register(world: dict, name: str, label: str) -> str:
    v = reg.log_router(
        world["models"][label],
        params={"label": label},
        metrics={"holdout_mase_router": 1.0},
        tags={"label": label},
        holdout=world["holdout"],
        name=name,
        run_name=f"{name}-{label}",
    )
    return v.version


@contextlib.contextmanager
def _service(world: dict, name: str, label: str, **extra: str) -> Iterator[httpx.Client]:
    """``bentoml serve`` on model ``name`` of the server (bandit and guardrail settings untouched unless
    ``extra`` says), once its champion and challenger are loaded; a client with a user key."""
    tmp = world["tmp"] / label
    tmp.mkdir()
    env = service_env(
        tmp,
        world["server"].url,
        f"{USER}:user,{ADMIN}:admin",
        isolate=tuple(v for v in UNSET if v not in extra),  # only what this service is told
        STOCKML_SERVING__MODEL_NAME=name,
        STOCKML_SERVING__POLL_S="1",
        **extra,
    )
    log_path = tmp / "bentoml-serve.log"
    with bentoml_serve(env, log_path) as (proc, url), httpx.Client(base_url=url, headers=auth(USER), timeout=300) as c:
        _wait(c, proc, log_path, lambda i: i["ready"] and i["aliases"]["challenger"] is not None, START_TIMEOUT_S)
        yield c
        assert "Traceback" not in log_path.read_text()


def _wait(client: httpx.Client, proc, log_path, ok, timeout: float) -> dict:
    deadline = time.time() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited: {log_path.read_text()[-3000:]}")
        try:
            info = client.post("/model_info").json()
            if ok(info):
                return info
        except (httpx.TransportError, ValueError, KeyError):
            info = None
        if time.time() > deadline:
            pytest.fail(f"not seen within {timeout} s; last /model_info: {info}")
        time.sleep(0.5)


def _true_actuals(world: dict, item: dict) -> list[dict]:
    actuals = world["holdout"][1]
    rows = actuals[actuals["unique_id"] == item["sku"]]
    return [{"ds": str(pd.Timestamp(d).date()), "y": float(y)} for d, y in zip(rows["ds"], rows["y"], strict=True)]


def _own_forecasts(item: dict) -> list[dict]:
    return [{"ds": p["ds"], "y": max(0.0, p["yhat"])} for p in item["forecasts"]]


def _until_decision(client: httpx.Client, world: dict, actuals_for) -> tuple[dict, dict[str, int]]:
    """Forecast the holdout SKUs and send ``actuals_for(version, item)`` back until the bandit acts
    (promote, refused, failed); returns that decision and the requests served per version."""
    payload = {"items": forecast_items(world["holdout"][0], SKUS), "horizon": HORIZON}
    served: dict[str, int] = {}
    for _ in range(MAX_ROUNDS):
        r = client.post("/forecast", json=payload)
        assert r.status_code == 200, r.text
        body = r.json()
        served[body["model_version"]] = served.get(body["model_version"], 0) + 1
        items = [
            {"forecast_id": i["forecast_id"], "actuals": actuals_for(i["model_version"], i)} for i in body["items"]
        ]
        fb = client.post("/feedback", json={"items": items})
        assert fb.status_code == 200, fb.text
        decision = fb.json()["decision"]
        if decision and decision["action"] in {"promote", "promote_refused", "promote_failed"}:
            print(f"\nrequests served per version before {decision['action']}: {served}")
            return decision, served
    pytest.fail(f"no decision after {MAX_ROUNDS} rounds ({served}): {client.post('/bandit').json()}")


def _tags(name: str, version: str) -> dict[str, str]:
    return MlflowClient().get_model_version(name, version).tags


class TestDefaults:
    NAME = "stockml-router-bandit-defaults"

    @pytest.fixture(scope="class")
    def client(self, world):
        assert _register(world, self.NAME, "poor") == "1"
        assert reg.promote(self.NAME, version="1").promoted  # first champion
        assert _register(world, self.NAME, "good") == "2"  # the challenger
        with _service(world, self.NAME, "defaults") as c:
            yield c

    def test_the_guardrails_are_at_their_defaults(self, client):
        config = client.post("/bandit").json()["config"]
        assert config == {
            "min_outcomes": 200, "min_stop_outcomes": None, "p_promote": 0.95, "p_stop": 0.05,
            "promotion_tolerance": 0.0,
        }  # fmt: skip

    def test_a_genuinely_better_challenger_is_promoted(self, client, world):
        decision, _ = _until_decision(client, world, lambda version, item: _true_actuals(world, item))
        assert decision["action"] == "promote", decision
        assert decision["p_better"] > 0.95 and decision["challenger"]["n"] >= 200
        tags = _tags(self.NAME, "2")
        assert tags["promotion.promoted"] == "True" and tags["promotion.actor"] == "bandit"
        assert tags["promotion.forced"] == "False" and float(tags["promotion.tolerance"]) == 0.0
        # better on the holdout for real: the guardrail's own figures, scored from the registry
        assert float(tags["promotion.candidate_score"]) < float(tags["promotion.champion_score"]), tags
        assert tags["bandit.decision"] == "promoted" and int(tags["bandit.n"]) >= 200
        assert str(MlflowClient().get_model_version_by_alias(self.NAME, reg.CHAMPION).version) == "2"
        info = client.post("/model_info").json()
        assert info["aliases"]["champion"]["version"] == "2" and info["aliases"]["challenger"] is None

    def test_a_worse_challenger_is_refused_and_the_refusal_is_on_record(self, client, world):
        assert _register(world, self.NAME, "slight") == "3"
        _wait(client, None, None, lambda i: (i["aliases"]["challenger"] or {}).get("version") == "3", 120)

        def flattering(version: str, item: dict) -> list[dict]:  # live data that favours v3
            return _own_forecasts(item) if version == "3" else _true_actuals(world, item)

        decision, _ = _until_decision(client, world, flattering)
        assert decision["action"] == "promote_refused", decision
        assert decision["p_better"] > 0.95 and not decision["guardrail"]["promoted"]
        assert "beyond tolerance 0.0%" in decision["guardrail"]["reason"]
        tags = _tags(self.NAME, "3")
        assert tags["promotion.promoted"] == "False" and tags["promotion.actor"] == "bandit"
        assert "beyond tolerance 0.0%" in tags["promotion.reason"] and float(tags["promotion.tolerance"]) == 0.0
        assert float(tags["promotion.candidate_score"]) > float(tags["promotion.champion_score"]), tags
        assert tags["promotion.previous_champion"] == "2"
        assert str(MlflowClient().get_model_version_by_alias(self.NAME, reg.CHAMPION).version) == "2"
        state = client.post("/bandit").json()
        assert state["champion"] == "2" and state["decisions"][-1]["action"] == "promote_refused"


class TestTolerance:
    NAME = "stockml-router-bandit-tolerance"

    @pytest.fixture(scope="class")
    def client(self, world):
        assert _register(world, self.NAME, "good") == "1"
        assert reg.promote(self.NAME, version="1").promoted
        assert _register(world, self.NAME, "slight") == "2"
        with _service(world, self.NAME, "tolerance", STOCKML_PROMOTION_TOLERANCE=str(TOLERANCE)) as c:
            yield c

    def test_a_slightly_worse_challenger_passes_a_tolerance_and_the_tags_say_so(self, client, world):
        assert client.post("/bandit").json()["config"]["promotion_tolerance"] == TOLERANCE

        def flattering(version: str, item: dict) -> list[dict]:
            return _own_forecasts(item) if version == "2" else _true_actuals(world, item)

        decision, _ = _until_decision(client, world, flattering)
        assert decision["action"] == "promote", decision
        tags = _tags(self.NAME, "2")
        cand, champ = float(tags["promotion.candidate_score"]), float(tags["promotion.champion_score"])
        assert champ < cand <= champ * (1 + TOLERANCE), tags  # worse on the holdout, within the 5 %
        assert tags["promotion.promoted"] == "True" and float(tags["promotion.tolerance"]) == TOLERANCE
        assert "within tolerance 5.0%" in tags["promotion.reason"] and tags["promotion.actor"] == "bandit"
        assert str(MlflowClient().get_model_version_by_alias(self.NAME, reg.CHAMPION).version) == "2"
