"""The champion/challenger bandit without HTTP: decision rule, simulated live traffic, outcome store, controller."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import ValidationError

from serving.bentos import bandit as bd
from serving.bentos.errors import validation_body
from serving.bentos.outcomes import OutcomeStore, ServedForecast
from serving.bentos.schemas import Observation
from serving.bentos.traffic import Bandit, BanditConfig, FeedbackRequest, feedback_items, history_scale

# ---------------------------------------------------------------- pure functions


def test_reward_and_scale():
    assert bd.reward(10, 10, 2.0) == 1.0
    assert bd.reward(12, 10, 2.0) == pytest.approx(0.5)  # one typical weekly move off
    assert bd.reward(5, None, 0.0) == pytest.approx(1 / 6)  # no forecast = 0; scale 0 -> 1
    assert bd.mase_scale([1, 3, 2]) == pytest.approx(1.5)
    assert bd.mase_scale([4, 4, 4]) == 1.0 and bd.mase_scale([7]) == 1.0
    # daily observations are summed into W-MON weeks, missing weeks are zero (as the router sees them)
    hist = [Observation(ds=dt.date(2024, 1, 1), y=2.0), Observation(ds=dt.date(2024, 1, 3), y=2.0)]
    hist.append(Observation(ds=dt.date(2024, 1, 15), y=4.0))  # weeks: 4, 0, 4
    assert history_scale(hist) == pytest.approx(4.0)


def test_prob_better_is_seeded_and_sensible():
    a, b = bd.Posterior(60, 40, 98), bd.Posterior(40, 60, 98)
    assert bd.prob_better(b, a) == bd.prob_better(b, a) > 0.99
    assert bd.prob_better(a, b) < 0.01
    assert abs(bd.prob_better(a, a) - 0.5) < 0.02
    assert bd.Posterior().update([1.0, 0.0, 0.25, 2.0]) == bd.Posterior(1 + 2.25, 1 + 1.75, 4)  # clipped to [0, 1]


def test_decision_rule_needs_the_minimum_outcomes():
    champ = bd.Posterior(50, 50, 98)
    strong = bd.Posterior(80, 20, 98)
    assert bd.decide(champ, strong, min_outcomes=200).action == "explore"
    assert bd.decide(champ, strong, min_outcomes=98).action == "promote"
    weak = bd.Posterior(15, 35, 48)
    assert bd.decide(champ, weak, min_outcomes=200).action == "explore"  # min_stop = 200 // 4 = 50 > 48
    assert bd.decide(champ, weak, min_outcomes=200, min_stop_outcomes=40).action == "stop"
    assert bd.decide(champ, bd.Posterior(15, 35, 50), min_outcomes=200).action == "stop"
    assert bd.traffic_shares(0.3) == {"champion": 0.7, "challenger": 0.3}
    assert bd.traffic_shares(0.3, stopped=True)["challenger"] == 0.0


# ---------------------------------------------------------------- simulated live traffic

SIM_MAX_OUTCOMES = 5000  # N: the horizon within which a decision must come
SIM_FEEDBACK_BATCH = 25  # outcomes between two evaluations of the rule (feedback arrives in batches)
SIM_DRAWS = 4000  # Monte-Carlo draws per evaluation (production: 20 000); s.e. of P near 0.95 is 0.0035


def _reward_draw(rng: np.random.Generator, mean: float, noise: str) -> float:
    if noise == "bernoulli":
        return float(rng.random() < mean)
    return float(rng.beta(mean * 4, (1 - mean) * 4))  # sd ~0.22 around the mean: a noisy continuous reward


def simulate(seed: int, champion_mean: float, challenger_mean: float, noise: str = "beta", min_outcomes: int = 200):
    """Live traffic under Thompson sampling, the rule evaluated after each feedback batch.
    Returns (decision, outcomes until it, challenger's share of the traffic)."""
    rng = np.random.default_rng(seed)
    post = {"champion": bd.Posterior(), "challenger": bd.Posterior()}
    means = {"champion": champion_mean, "challenger": challenger_mean}
    served = Counter()
    outcomes = 0
    while outcomes < SIM_MAX_OUTCOMES:
        for _ in range(SIM_FEEDBACK_BATCH):
            arm = bd.choose(post["champion"], post["challenger"], rng)
            served[arm] += 1
            post[arm] = post[arm].update([_reward_draw(rng, means[arm], noise)])
        outcomes += SIM_FEEDBACK_BATCH
        d = bd.decide(post["champion"], post["challenger"], min_outcomes, draws=SIM_DRAWS, seed=seed)
        if d.action != "explore":
            return d.action, outcomes, served["challenger"] / outcomes
    return "explore", outcomes, served["challenger"] / outcomes


def _rates(champion_mean: float, challenger_mean: float, noise: str = "beta", runs: int = 100):
    t0 = time.perf_counter()
    res = [simulate(seed, champion_mean, challenger_mean, noise) for seed in range(runs)]
    counts = Counter(r[0] for r in res)
    rates = {k: counts[k] / runs for k in ("promote", "stop", "explore")}
    med = float(np.median([r[1] for r in res]))
    print(
        f"\nchampion {champion_mean} vs challenger {challenger_mean} ({noise} rewards, {runs} seeded runs, "
        f"N={SIM_MAX_OUTCOMES}): {rates}, median outcomes to decision {med:.0f}, {time.perf_counter() - t0:.1f} s"
    )
    return rates, res


def test_simulation_better_challenger_is_promoted():
    rates, _ = _rates(0.50, 0.55)  # 10 % better
    assert rates["promote"] >= 0.90, rates
    assert rates["stop"] <= 0.02, rates


def test_simulation_equal_challenger_is_rarely_promoted():
    rates, _ = _rates(0.50, 0.50)
    assert rates["promote"] <= 0.05, rates


def test_simulation_worse_challenger_gets_no_traffic():
    rates, res = _rates(0.50, 0.35)
    assert rates["stop"] >= 0.90 and rates["promote"] == 0, rates
    # Thompson sampling starves it even before the stop (the few runs not stopped within N are those)
    assert max(r[2] for r in res if r[0] != "stop") < 0.1
    assert np.median([r[2] for r in res]) < 0.3


@pytest.mark.slow
def test_simulation_with_bernoulli_rewards_is_reported():
    """Coin-flip rewards are the worst case for the fractional update (no variance to spare): printed, and the
    false promotion rate under continuous monitoring is bounded loosely only (see the module docstring)."""
    better, _ = _rates(0.50, 0.55, "bernoulli")
    equal, _ = _rates(0.50, 0.50, "bernoulli")
    assert better["promote"] >= 0.8 and equal["promote"] <= 0.5


# ---------------------------------------------------------------- outcome store


def _served(
    version: str, points: dict[str, float], scale: float = 2.0, sku: str = "A", model: str = "m"
) -> ServedForecast:
    return ServedForecast(str(uuid.uuid4()), sku, model, version, "champion", len(points), scale, points)


WEEKS = {"2024-01-01": 10.0, "2024-01-08": 20.0}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    """A fresh outcome DB: a SQLite file, or a throw-away schema in the test Postgres (search_path in the URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serving.db'}"
        return
    from services import search_path_uri, throwaway_pg_schema

    with throwaway_pg_schema("stockml_bandit") as (_, schema):
        yield search_path_uri(schema)


def test_store_scores_idempotently_and_survives_a_restart(store_url):
    url = store_url
    store = OutcomeStore(url)
    f1, f2 = _served("1", WEEKS), _served("2", WEEKS, sku="B")
    assert store.record_forecasts([f1, f2]) == 2
    out = store.score("m", [(f1.forecast_id, [("2024-01-01", 12.0)]), (f2.forecast_id, [("2024-01-01", 10.0)])])
    assert [o.reward for o in out] == [pytest.approx(0.5), 1.0] and [o.counted for o in out] == [1, 1]
    again = store.score("m", [(f1.forecast_id, [("2024-01-01", 99.0), ("2024-01-08", 20.0)])])[0]
    assert again.duplicates == 1 and again.counted == 1 and again.reward == 1.0  # only the new week counts
    assert again.points[0]["counted"] is False and again.points[0]["reward"] == pytest.approx(1 / (1 + 89 / 2))
    post = store.posteriors("m")
    assert post["1"] == bd.Posterior(1 + 1.5, 1 + 0.5, 2) and post["2"] == bd.Posterior(2.0, 1.0, 1)

    store.engine.dispose()
    reopened = OutcomeStore(url)  # a restart: a new store object on the same file
    assert reopened.posteriors("m") == post
    assert reopened.forecast(f1.forecast_id)["sku"] == "A"
    dup = reopened.score("m", [(f1.forecast_id, [("2024-01-08", 0.0)])])[0]
    assert dup.counted == 0 and dup.duplicates == 1 and reopened.posteriors("m") == post


def test_concurrent_duplicate_feedback_counts_once(store_url):
    store = OutcomeStore(store_url)
    served = [_served("1", WEEKS) for _ in range(20)]
    store.record_forecasts(served)
    batch = [(f.forecast_id, [("2024-01-01", 11.0), ("2024-01-08", 20.0)]) for f in served]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.score("m", batch), range(8)))
    assert sum(i.counted for r in results for i in r) == 40  # 20 forecasts x 2 weeks, whatever the interleaving
    post = store.posteriors("m")["1"]
    assert post.n == 40 and post.alpha == pytest.approx(1 + 20 * (1 / 1.5 + 1.0))


def test_store_reports_unknown_ids_and_weeks(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 's.db'}")
    f = _served("1", WEEKS)
    store.record_forecasts([f])
    unknown, wrong_week = store.score("m", [("nope", [("2024-01-01", 1.0)]), (f.forecast_id, [("2024-03-04", 1.0)])])
    assert unknown.error == "unknown forecast_id"
    assert wrong_week.counted == 0 and "not one of" in wrong_week.points[0]["error"]
    assert store.posteriors("m") == {}


def test_feedback_request_validation_names_the_field():
    good = {"items": [{"forecast_id": "x", "actuals": [{"ds": "2024-01-02", "y": 3}, {"ds": "2024-01-03", "y": 1.5}]}]}
    req = FeedbackRequest.model_validate_json(json.dumps(good))
    assert feedback_items(req.items) == [("x", [("2024-01-01", 4.5)])]  # summed into the W-MON week
    bad = {"items": [{"forecast_id": "x", "actuals": [{"ds": "2024-01-01", "y": -1}]}]}
    with pytest.raises(ValidationError) as exc:
        FeedbackRequest.model_validate_json(json.dumps(bad))
    assert validation_body(exc.value)["detail"][0]["field"] == "items[0].actuals[0].y"
    twice = {"items": [good["items"][0], good["items"][0]]}  # the same forecast_id twice
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate_json(json.dumps(twice))


# ---------------------------------------------------------------- controller (real registry, stand-in watcher)

REGISTRY_NAME = "stockml-router-controller-test"


@pytest.fixture(scope="module")
def controller_registry(router_data, tmp_path_factory):
    """A real (embedded SQLite) registry: v1 the trained router (champion), v2 the same router pulled 30 %
    towards CrostonSBA (challenger), which is a few per cent worse on their shared holdout."""
    import dataclasses

    import mlflow

    from training.registry import mlflow_registry as reg
    from training.router.predict import RouterModel
    from training.router.train import train_router

    tmp = tmp_path_factory.mktemp("controller-registry")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    good = RouterModel.from_training(t)
    slight = dataclasses.replace(good, policy=dataclasses.replace(good.policy, anchor="CrostonSBA", shrink=0.3))
    skus = list(t.holdout_forecasts["unique_id"].unique())[:10]
    holdout = reg.split_holdout(router_data["demand"], t.holdout_cutoff, 8, skus)
    reg.configure(f"sqlite:///{tmp / 'mlflow.db'}", "stockml-controller-test", tmp / "artifacts")
    for label, model in (("good", good), ("slight", slight)):
        reg.log_router(model, params={}, metrics={}, tags={"label": label}, holdout=holdout, name=REGISTRY_NAME)
        if label == "good":
            assert reg.promote(REGISTRY_NAME, version="1").promoted
    yield reg
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@dataclass(frozen=True)
class _Loaded:
    name: str
    version: str


class _Watcher:
    """Stands in for the service's ModelWatcher, which loads and warms up the pyfuncs: the controller only
    reads the loaded versions' names and numbers and asks for a refresh after a promotion. The real watcher
    is exercised over HTTP in tests/system (test_serving*.py)."""

    def __init__(self, champion: str, challenger: str | None, name: str = "m") -> None:
        self.name = name
        self.aliases = {"champion": champion, "challenger": challenger}
        self.refreshed = 0

    def get(self, alias: str):
        v = self.aliases.get(alias)
        return _Loaded(self.name, v) if v else None

    def refresh(self, force: bool = False):
        self.refreshed += 1
        return {}


def _feed(store: OutcomeStore, version: str, rewards_y: list[float], n: int, model: str = "m") -> None:
    """n forecasts of yhat=10 (scale 1) by ``version``, each with one actual from rewards_y (cycled)."""
    served = [_served(version, {"2024-01-01": 10.0}, scale=1.0, model=model) for _ in range(n)]
    store.record_forecasts(served)
    store.score(model, [(s.forecast_id, [("2024-01-01", rewards_y[k % len(rewards_y)])]) for k, s in enumerate(served)])


def test_controller_promotes_through_the_real_guardrails_once(tmp_path, controller_registry):
    """The bandit asks; the real guardrail (the registry's holdout scores) refuses v2 at tolerance 0 and
    the refusal is not retried on every request; with a tolerance above v2's gap it promotes."""
    import dataclasses

    from mlflow import MlflowClient

    reg, name = controller_registry, REGISTRY_NAME
    store = OutcomeStore(f"sqlite:///{tmp_path / 's.db'}")
    watcher = _Watcher("1", "2", name)
    bandit = Bandit(store, watcher, BanditConfig(min_outcomes=40, tolerance=0.0), seed=0)
    _feed(store, "1", [13.0], 40, name)  # reward 0.25
    _feed(store, "2", [10.0], 40, name)  # reward 1: the live evidence favours v2
    first = bandit.evaluate()
    assert first["action"] == "promote_refused" and "beyond tolerance 0.0%" in first["guardrail"]["reason"], first
    tags = MlflowClient().get_model_version(name, "2").tags
    assert tags["promotion.promoted"] == "False" and tags["promotion.actor"] == "bandit"
    gap = float(tags["promotion.candidate_score"]) / float(tags["promotion.champion_score"]) - 1
    assert 0 < gap < 0.1, tags  # v2 really is (slightly) worse on the holdout
    assert bandit.evaluate() is None  # refused: not retried on every request
    assert str(MlflowClient().get_model_version_by_alias(name, reg.CHAMPION).version) == "1"

    _feed(store, "2", [10.0], 40, name)
    bandit.config = dataclasses.replace(bandit.config, tolerance=0.1)
    second = bandit.evaluate()
    assert second["action"] == "promote" and watcher.refreshed == 1, second
    assert [d["action"] for d in store.decisions(name)] == ["promote_refused", "promote"]
    assert str(MlflowClient().get_model_version_by_alias(name, reg.CHAMPION).version) == "2"
    tags = MlflowClient().get_model_version(name, "2").tags
    assert tags["promotion.promoted"] == "True" and "within tolerance 10.0%" in tags["promotion.reason"]
    assert tags["bandit.decision"] == "promoted" and tags["bandit.n"] == "80"
    state = bandit.state()
    assert state["p_challenger_better"] > 0.95 and state["posteriors"]["2"]["n"] == 80


def test_controller_stops_a_worse_challenger(tmp_path, controller_registry):
    from mlflow import MlflowClient

    store = OutcomeStore(f"sqlite:///{tmp_path / 's.db'}")
    bandit = Bandit(store, _Watcher("1", "2", REGISTRY_NAME), BanditConfig(min_outcomes=200), seed=0)
    _feed(store, "1", [10.0, 11.0], 100, REGISTRY_NAME)
    _feed(store, "2", [14.0, 20.0], 50, REGISTRY_NAME)
    assert bandit.route()[1] in {"champion", "challenger"}
    assert bandit.evaluate()["action"] == "stop"
    assert bandit.evaluate() is None  # recorded once
    assert {bandit.route()[1] for _ in range(50)} == {"champion"}
    state = bandit.state()
    assert state["stopped"] and state["traffic_shares"]["challenger"] == 0.0
    assert MlflowClient().get_model_version(REGISTRY_NAME, "2").tags["bandit.decision"] == "stopped"


def test_thompson_routing_follows_the_posteriors(tmp_path):
    store = OutcomeStore(f"sqlite:///{tmp_path / 's.db'}")
    bandit = Bandit(store, _Watcher("1", "2"), BanditConfig(min_outcomes=10_000), seed=1)
    assert {bandit.route()[1] for _ in range(100)} == {"champion", "challenger"}  # both Beta(1, 1)
    _feed(store, "1", [12.0], 30)
    _feed(store, "2", [10.0], 30)
    share = sum(bandit.route()[1] == "challenger" for _ in range(300)) / 300
    assert share > 0.95
    assert Bandit(store, _Watcher("1", None), BanditConfig()).route() == (_Loaded("m", "1"), "champion")
