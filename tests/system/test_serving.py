"""System tests of the BentoML service over real HTTP.

A small router is trained from the shared ``router_data`` catalogue and registered in a
temporary SQLite MLflow registry; ``bentoml serve serving.bentos.service:StockForecaster``
then runs as a subprocess on a free port (as in production: the real ASGI stack, middlewares,
metrics) and every test talks to it with httpx. The module's tests share that one server and
run in file order: the last one moves the ``champion`` alias.
"""

from __future__ import annotations

import datetime
import json
import random
import threading
import time

import httpx
import mlflow
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

EXPERIMENT = "stockml-router-serving-test"
USER, ADMIN, SLOW = "user-key-1", "admin-key-1", "slow-key-1"


@pytest.fixture(scope="module")
def registry(router_data, tmp_path_factory):
    """Version 1 of ``stockml-router`` in a fresh SQLite registry (challenger only, not promoted yet)."""
    tmp = tmp_path_factory.mktemp("serving")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    uri, model, holdout = train_and_configure(router_data, tmp, EXPERIMENT)
    v1 = register(model, holdout, "v1")
    assert v1.version == "1"
    yield {"uri": uri, "tmp": tmp, "model": model, "holdout": holdout, "demand": router_data["demand"]}
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def server(registry):
    """The real service. It starts before any champion exists, so start-up gating is observed first."""
    tmp = registry["tmp"]
    env = service_env(
        tmp,
        registry["uri"],
        f"{USER}:user,{ADMIN}:admin,{SLOW}:user:1",
        STOCKML_SERVING__POLL_S="2",
        STOCKML_SERVING__MAX_BODY_BYTES="1000000",
    )
    log_path = tmp / "bentoml-serve.log"
    observed: dict = {}
    with bentoml_serve(env, log_path) as (proc, url):
        deadline = time.time() + START_TIMEOUT_S
        with httpx.Client(base_url=url, timeout=30) as c:
            while True:  # the process answers /livez before the model is there
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"bentoml serve did not come up: {log_path.read_text()[-3000:]}")
                try:
                    if c.get("/livez").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            not_ready = c.get("/readyz")
            observed["readyz_without_champion"] = not_ready.status_code
            observed["readyz_body"] = not_ready.json()  # the documented ErrorBody, not BentoML's plain text
            r = c.post("/forecast", json={"items": forecast_items(registry["demand"], 1)}, headers=auth(USER))
            observed["forecast_without_champion"] = (r.status_code, r.json())
            assert reg.promote(version="1").promoted
            while c.get("/readyz").status_code != 200:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"service never became ready: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "observed": observed, "log": log_path, "registry": registry}


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server["url"], headers=auth(USER), timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def demand(registry) -> pd.DataFrame:
    return registry["demand"]


def _check_forecast(body: dict, skus: list[str], horizon: int, version: str) -> None:
    assert body["model_version"] == version and body["horizon"] == horizon
    assert [i["sku"] for i in body["items"]] == skus
    for item in body["items"]:
        assert item["model_version"] == version
        assert len(item["forecast_id"]) == 36
        assert item["pattern"] in {"smooth", "erratic", "intermittent", "lumpy"}
        assert item["method"] in item["weights"] and abs(sum(item["weights"].values()) - 1) < 0.01
        assert 0 <= item["confidence"] <= 1 and item["explanation"]
        points = item["forecasts"]
        assert [p["step"] for p in points] == list(range(1, horizon + 1))
        dates = pd.to_datetime([p["ds"] for p in points])
        assert (dates.weekday == 0).all() and (pd.Series(dates).diff().dropna() == pd.Timedelta(weeks=1)).all()
        for p in points:
            eps = 1e-9 * max(1.0, abs(p["hi95"]))
            assert p["lo95"] - eps <= p["lo80"] <= p["yhat"] + eps, p
            assert p["yhat"] - eps <= p["hi80"] <= p["hi95"] + eps, p
            assert p["lo95"] >= 0


# ---------------------------------------------------------------- start-up, health


def test_not_ready_and_503_until_a_champion_is_loaded(server):
    obs = server["observed"]
    assert obs["readyz_without_champion"] == 503 and "not ready" in obs["readyz_body"]["error"]
    status, body = obs["forecast_without_champion"]
    assert status == 503 and "no champion" in body["error"]


def test_health_readiness_and_metrics_are_open(server):
    with httpx.Client(base_url=server["url"], timeout=30) as anon:
        for path in ("/healthz", "/livez", "/readyz"):
            assert anon.get(path).status_code == 200, path
        metrics = anon.get("/metrics")
        assert metrics.status_code == 200
        assert "bentoml_service_request_total" in metrics.text


# ---------------------------------------------------------------- forecast, classify


def test_forecast_one_sku(client, demand):
    items = forecast_items(demand, 1)
    r = client.post("/forecast", json={"items": items, "horizon": 5})
    assert r.status_code == 200, r.text
    _check_forecast(r.json(), [items[0]["sku"]], 5, "1")
    last = max(pd.Timestamp(o["ds"]) for o in items[0]["history"])
    assert pd.Timestamp(r.json()["items"][0]["forecasts"][0]["ds"]) > last


def test_forecast_twenty_skus_default_horizon(client, demand):
    items = forecast_items(demand, 20)
    r = client.post("/forecast", json={"items": items})
    assert r.status_code == 200, r.text
    _check_forecast(r.json(), [i["sku"] for i in items], 13, "1")


def test_repeated_forecast_comes_from_the_cache(client, demand):
    payload = {"items": forecast_items(demand, 20)[10:], "horizon": 7}
    t0 = time.perf_counter()
    first = client.post("/forecast", json=payload)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = client.post("/forecast", json=payload)
    t_second = time.perf_counter() - t0
    assert first.status_code == second.status_code == 200
    a, b = first.json()["items"], second.json()["items"]
    assert not any(i["cached"] for i in a) and all(i["cached"] for i in b)
    assert [i["forecasts"] for i in a] == [i["forecasts"] for i in b]
    assert {i["forecast_id"] for i in a}.isdisjoint(i["forecast_id"] for i in b)  # every answer gets its own ids
    print(f"uncached {t_first * 1000:.0f} ms, cached {t_second * 1000:.0f} ms")
    # One SKU's history changes: only that one is recomputed.
    payload["items"][0]["history"][-1]["y"] += 1
    third = client.post("/forecast", json=payload).json()["items"]
    assert [i["cached"] for i in third] == [False] + [True] * (len(third) - 1)
    metrics = client.get("/metrics").text
    assert 'stockml_forecast_cache_total{result="hit"}' in metrics


def test_classify(client, demand):
    items = forecast_items(demand, 6)
    items.append(
        {"sku": "sparse", "history": [{"ds": f"2024-{m:02d}-01", "y": float(m % 3 == 0) * 7} for m in (1, 5, 9)]}
    )
    r = client.post("/classify", json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rule_source"] == "stockml-router v1" and "ABC" in body["note"]
    out = {i["sku"]: i for i in body["items"]}
    assert list(out) == [i["sku"] for i in items]
    for item in out.values():
        assert item["pattern"] in {"smooth", "erratic", "intermittent", "lumpy"}
        assert item["xyz"] in {"X", "Y", "Z"} and item["weeks"] >= 2
        adi_high = item["adi"] >= body["rule"]["adi_cutoff"]
        cv2_high = item["cv2"] >= body["rule"]["cv2_cutoff"]
        expected = {(False, False): "smooth", (False, True): "erratic", (True, False): "intermittent"}
        assert item["pattern"] == expected.get((adi_high, cv2_high), "lumpy")
    assert out["sparse"]["pattern"] in {"intermittent", "lumpy"} and out["sparse"]["weeks"] > 30


def test_model_info(client):
    r = client.post("/model_info")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] and body["aliases"]["champion"]["version"] == "1"
    assert body["aliases"]["champion"]["router"]["methods"]


# ---------------------------------------------------------------- auth, limits


def test_missing_or_wrong_key_is_401(server, demand):
    payload = {"items": forecast_items(demand, 1)}
    with httpx.Client(base_url=server["url"], timeout=30) as anon:
        for headers in ({}, auth("not-a-key"), {"Authorization": f"Basic {USER}"}, {"Authorization": "Bearer"}):
            r = anon.post("/forecast", json=payload, headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"].startswith("Bearer") and r.json()["error"]
        assert anon.post("/admin/reload", json={}).status_code == 401


def test_user_key_on_admin_endpoint_is_403(client):
    r = client.post("/admin/reload", json={})
    assert r.status_code == 403 and "admin" in r.json()["error"]


def test_rate_limit_is_429_per_key(server, client):
    with httpx.Client(base_url=server["url"], headers=auth(SLOW), timeout=30) as slow:
        responses = [slow.post("/model_info") for _ in range(12)]  # rate 1/s, burst 2
    codes = [r.status_code for r in responses]
    assert codes[:2] == [200, 200] and 429 in codes and set(codes) <= {200, 429}, codes
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"] == "rate limit exceeded"
    assert client.post("/model_info").status_code == 200  # other keys are not affected
    time.sleep(1.2)
    with httpx.Client(base_url=server["url"], headers=auth(SLOW), timeout=30) as slow:
        assert slow.post("/model_info").status_code == 200  # the bucket refills


# ---------------------------------------------------------------- validation


def _dated(*ds: str) -> dict:
    return {"items": [{"sku": "A", "history": [{"ds": d, "y": 1.0} for d in ds]}]}


def _series(sku: str = "A", ys=(3.0, 0.0, 5.0, 2.0)) -> dict:
    days = pd.date_range("2024-01-01", periods=len(ys), freq="W-MON")
    return {"sku": sku, "history": [{"ds": str(d.date()), "y": y} for d, y in zip(days, ys, strict=True)]}


INVALID = [
    ("negative y", {"items": [_series(ys=(1.0, -2.0))]}, "items[0].history[1].y"),
    ("non-numeric y", {"items": [_series(ys=(1.0, "lots"))]}, "items[0].history[1].y"),
    ("boolean y", {"items": [_series(ys=(True, 1.0))]}, "items[0].history[0].y"),
    ("empty history", {"items": [{"sku": "A", "history": []}]}, "items[0].history"),
    ("horizon 0", {"items": [_series()], "horizon": 0}, "horizon"),
    ("horizon 105", {"items": [_series()], "horizon": 105}, "horizon"),
    ("horizon text", {"items": [_series()], "horizon": "13"}, "horizon"),
    ("no items", {"items": []}, "items"),
    ("too many items", {"items": [_series(f"S{i}", (1.0, 2.0)) for i in range(1001)]}, "items"),
    ("bad date", _dated("2024-02-30", "2024-03-04"), "items[0].history[0].ds"),
    ("not a date", _dated("yesterday", "2024-03-04"), "items[0].history[0].ds"),
    ("date out of range", _dated("2300-01-01", "2300-01-09"), "items[0].history[0].ds"),
    ("unknown field", {"items": [_series()], "horizn": 4}, "horizn"),
    ("missing items", {"horizon": 4}, "items"),
    ("missing sku", {"items": [{"history": _series()["history"]}]}, "items[0].sku"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "payload", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_forecast_input_is_422_naming_the_field(client, case, payload, field):
    r = client.post("/forecast", json=payload)
    assert r.status_code == 422, (case, r.status_code, r.text[:300])
    body = r.json()
    assert field in {d["field"] for d in body["detail"]}, body
    assert field in body["error"] or any(field == d["field"] for d in body["detail"])
    assert "Traceback" not in r.text


def test_what_the_schema_allows_is_answered(client):
    """Bodies the schema allows but the service once refused: one week of history (Naive, no interval), the
    same sku twice (one series, answered once), a history longer than 1040 weeks (its last 1040 used)."""
    one_week = client.post("/forecast", json={**_dated("2024-01-01", "2024-01-03"), "horizon": 2})
    assert one_week.status_code == 200, one_week.text[:300]
    (item,) = one_week.json()["items"]
    assert item["method"] == "Naive" and [p["yhat"] for p in item["forecasts"]] == [2.0, 2.0]
    assert item["forecasts"][0]["hi80"] is None and item["confidence"] is None
    twice = client.post("/forecast", json={"items": [_series("A", (1.0, 2.0)), _series("A", (3.0, 4.0))]})
    assert twice.status_code == 200 and [i["sku"] for i in twice.json()["items"]] == ["A"], twice.text[:300]
    pooled = client.post("/forecast", json={"items": [_series("A", (4.0, 6.0))]}).json()["items"][0]
    assert [p["yhat"] for p in twice.json()["items"][0]["forecasts"]] == [p["yhat"] for p in pooled["forecasts"]]
    long = _dated("1990-01-01", "2024-01-01", "2024-01-08")
    r = client.post("/forecast", json=long)
    assert r.status_code == 200, r.text[:300]
    recent = client.post("/forecast", json=_dated("2024-01-01", "2024-01-08")).json()["items"][0]
    assert r.json()["items"][0]["forecasts"] == recent["forecasts"]


def test_non_json_bodies(client):
    for raw in (b"{not json", b"", b"[]", b"null", "ü".encode("latin-1")):
        r = client.post("/forecast", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
        assert r.json()["detail"][0]["field"] in {"body", "items"}
    r = client.post("/forecast", content=b"items=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415


def test_oversized_payload_is_413(client):
    big = {"items": [_series(f"S{i}", tuple(float(j) for j in range(100))) for i in range(400)]}
    raw = json.dumps(big).encode()
    assert 1_000_000 < len(raw) < 2_000_000
    r = client.post("/forecast", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["max_body_bytes"] == 1_000_000


def _mutations(rng: random.Random, valid: dict) -> list[tuple[str, object]]:
    """Seeded malformed (and a few valid edge-case) payloads for /forecast."""
    junk = [None, True, -1, 0, 1.5, -1e308, 1e308, "", "x", "2024-13-01", [], {}, [None], {"a": 1}, "NaN", 10**30]
    out: list[tuple[str, object]] = []
    for _ in range(220):
        p = json.loads(json.dumps(valid))
        kind = rng.choice(["top", "item", "obs", "raw", "shape", "valid"])
        if kind == "top":
            key = rng.choice(["items", "horizon", "extra"])
            if rng.random() < 0.3 and key in p:
                del p[key]
            else:
                p[key] = rng.choice(junk)
        elif kind == "item":
            item = rng.choice(p["items"])
            key = rng.choice(["sku", "history", "other"])
            if rng.random() < 0.3 and key in item:
                del item[key]
            else:
                item[key] = rng.choice(junk)
        elif kind == "obs":
            obs = rng.choice(rng.choice(p["items"])["history"])
            key = rng.choice(["ds", "y", "z"])
            if rng.random() < 0.3 and key in obs:
                del obs[key]
            else:
                obs[key] = rng.choice([*junk, -0.0001, -5, "1e3", "2024-02-29T10:00:00", "0001-01-01", "99999-01-01"])
        elif kind == "raw":
            text = json.dumps(p)
            cut = rng.randrange(len(text))
            choice = rng.choice(["truncate", "bytes", "nan", "deep", "dup"])
            p = {
                "truncate": text[:cut],
                "bytes": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))),
                "nan": text.replace('"y": 3.0', '"y": NaN', 1).replace('"y": 0.0', '"y": -Infinity', 1),
                "deep": "[" * 5000 + "]" * 5000,
                "dup": text[:-1] + ', "items": 5}',
            }[choice]
        elif kind == "shape":
            p = rng.choice([[], [p], "items", 42, None, {"items": {"sku": "A"}}, {"items": [[1, 2]]}])
        else:  # valid edge cases must still be answered, and not with a 5xx
            p["horizon"] = rng.choice([1, 104])
            p["items"][0]["history"] = [
                {"ds": "2024-01-01", "y": rng.choice([0.0, 1e12, 1e-9])},
                {"ds": rng.choice(["2024-01-08", "2043-11-30"]), "y": rng.choice([0.0, 7.0])},  # 2 .. 1040 weeks
            ]
            p["items"][0]["sku"] = rng.choice(["ünïcødé-😀", " ", "x" * 200, "a/b?c=d"])
        out.append((kind, p))
    return out


def _unknown_sku(r: httpx.Response) -> bool:
    """A 404 for an item left without a history (by SKU) whose SKU nothing publishes: the body names it.
    This server's source database has no published tables, so every by-SKU item is unknown."""
    if r.status_code != 404:
        return False
    body = r.json()
    return bool(body.get("sku") is not None and body["detail"][0]["field"].startswith("items[") and body["error"])


def test_by_sku_without_published_tables_is_404_naming_the_sku(client):
    r = client.post("/forecast", json={"items": [_series("A"), {"sku": "NO-SUCH"}]})
    assert r.status_code == 404 and r.json()["sku"] == "NO-SUCH" and "'NO-SUCH'" in r.json()["error"], r.text
    assert r.json()["detail"][0]["field"] == "items[1].sku"
    r = client.post("/recommend_order", json={"items": [{**_series("A"), "lead_time_weeks": 2}]})
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "items[0].on_hand", r.text


def test_fuzzed_forecast_payloads_never_get_a_5xx(client):
    """Seeded mutations of a valid body (near-misses hypothesis rarely builds): 4xx with a JSON error."""
    rng = random.Random(20261125)
    valid = {"items": [_series("A"), _series("B", (0.0, 0.0, 4.0, 0.0, 0.0, 9.0))], "horizon": 4}
    counts: dict[int, int] = {}
    for kind, payload in _mutations(rng, valid):
        if isinstance(payload, (bytes, str)):
            raw = payload.encode() if isinstance(payload, str) else payload
        else:
            raw = json.dumps(payload).encode()
        r = client.post("/forecast", content=raw, headers={"Content-Type": "application/json"})
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
        assert r.status_code < 500, (kind, raw[:300], r.status_code, r.text[:300])
        assert r.status_code in (200, 413, 422) or _unknown_sku(r), (kind, raw[:300], r.status_code, r.text[:300])
        body = r.json()
        if r.status_code == 200:
            assert all(i["forecasts"] for i in body["items"])
        else:
            assert body["error"] and "Traceback" not in r.text
    print("fuzz status counts:", counts)
    assert counts.get(422, 0) > 100 and counts.get(200, 0) > 5


def test_fuzzed_classify_payloads_never_get_a_5xx(client):
    rng = random.Random(7)
    valid = {"items": [_series("A"), _series("B", (0.0, 0.0, 4.0, 0.0, 0.0, 9.0))]}
    for kind, payload in _mutations(rng, {**valid, "horizon": 4})[:120]:
        if isinstance(payload, dict):
            payload.pop("horizon", None)
        raw = payload if isinstance(payload, bytes) else (payload if isinstance(payload, str) else json.dumps(payload))
        r = client.post("/classify", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code in (200, 413, 422), (kind, str(raw)[:300], r.status_code, r.text[:300])


# Property-based: hypothesis builds request bodies from the shape of the schema, then bends every
# field (wrong types, negative, huge, NaN, unicode, missing, extra, empty). Whatever it sends, the
# service answers 200, 413 or 422 with a JSON error (or, for an item left without a history or stock, the
# 404 naming its SKU): never a 5xx, never a traceback.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**15), 10**15), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)  # fmt: skip
_json = st.recursive(
    _scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)  # fmt: skip
_dates = st.one_of(
    st.dates(min_value=datetime.date(1, 1, 1), max_value=datetime.date(9999, 12, 31)).map(str),
    st.dates(min_value=datetime.date(2020, 1, 1), max_value=datetime.date(2026, 11, 1)).map(str),
    st.text(max_size=12), st.integers(), st.none(),
)  # fmt: skip
_y = st.one_of(st.floats(min_value=0, max_value=1e6), st.floats(allow_nan=True, allow_infinity=True), _scalars)
_week = st.fixed_dictionaries({"ds": _dates, "y": _y}, optional={"extra": _json})
_item = st.fixed_dictionaries(
    {"sku": st.one_of(st.text(max_size=40), st.integers(), st.none()), "history": st.lists(_week, max_size=30) | _json},
    optional={"on_hand": _y, "lead_time_weeks": _y},
)
_body = st.one_of(
    st.fixed_dictionaries(
        {"items": st.lists(_item, max_size=4) | _json},
        optional={"horizon": st.one_of(st.integers(-5, 200), _scalars), "unexpected": _json},
    ),
    _json,
)


def _post_never_5xx(client, path: str, body: object) -> None:
    try:
        raw = json.dumps(body, allow_nan=True).encode()
    except (TypeError, ValueError):  # e.g. a float too large for JSON
        return
    r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    by_sku = path != "/classify" and _unknown_sku(r)
    assert r.status_code in (200, 413, 422) or by_sku, (path, raw[:300], r.status_code, r.text[:300])
    if r.status_code != 200:
        assert r.json()["error"] and "Traceback" not in r.text


@settings(max_examples=120, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(body=_body)
def test_property_based_forecast_bodies_never_get_a_5xx(client, body):
    _post_never_5xx(client, "/forecast", body)


@settings(max_examples=80, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(body=_body, path=st.sampled_from(["/classify", "/recommend_order"]))
def test_property_based_classify_and_order_bodies_never_get_a_5xx(client, body, path):
    _post_never_5xx(client, path, body)


def test_monitoring_reads_the_services_metrics_and_bandit(client, demand):
    """monitoring.serving_health on this service's own /metrics and /bandit (what stock_monitoring reads)."""
    from monitoring.serving_health import serving_health

    payload = {"items": forecast_items(demand, 3), "horizon": 4}
    assert client.post("/forecast", json=payload).status_code == 200
    assert client.post("/forecast", json=payload).status_code == 200  # served from the cache
    assert client.post("/forecast", json={"items": [], "horizon": 4}).status_code == 422  # a 4xx, counted as such
    health = serving_health(client.get("/metrics").text, client.post("/bandit").json())
    forecast = health["requests"]["by_endpoint"]["/forecast"]
    assert forecast["requests"] >= 3 and 0 < forecast["error_rate_4xx"] < 1
    assert "/metrics" not in health["requests"]["by_endpoint"]  # the monitor's own probes are left out
    lat = health["latency"]["/forecast"]
    assert lat["requests"] == forecast["requests"] and 0 < lat["p50_s"] <= lat["p95_s"] <= lat["p99_s"]
    assert lat["mean_s"] > 0
    cache = health["cache"]
    assert cache["hits"] >= 3 and 0 < cache["hit_rate"] <= 1
    bandit = health["bandit"]
    assert bandit["champion"] is not None and set(bandit["traffic_shares"]) == {"champion", "challenger"}
    assert sum(bandit["traffic_shares"].values()) == pytest.approx(1.0)


def test_server_log_has_no_traceback(server):
    assert "Traceback" not in server["log"].read_text()


# ---------------------------------------------------------------- alias moves (runs last: changes the champion)


def test_alias_move_is_picked_up_without_dropping_requests(server, client, demand):
    registry = server["registry"]
    payload = {"items": forecast_items(demand, 3), "horizon": 4}
    probe = {"items": forecast_items(demand, 3), "horizon": 6}  # only requested by this thread
    assert client.post("/forecast", json=payload).json()["model_version"] == "1"
    assert client.post("/forecast", json=probe).json()["model_version"] == "1"
    reg.configure(registry["uri"], EXPERIMENT)
    v2 = register(registry["model"], registry["holdout"], "v2")
    assert v2.version == "2"
    assert reg.promote(version="2", force=True, who="test_serving").promoted

    # Requests keep flowing while the new version is loaded and swapped in.
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=server["url"], headers=auth(USER), timeout=60) as c:
            while not stop.is_set():
                r = c.post("/forecast", json=payload)
                seen.append((r.status_code, r.json().get("model_version")))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        with httpx.Client(base_url=server["url"], headers=auth(ADMIN), timeout=120) as admin:
            # force: load and swap even if the 2 s poll saw the move first, so a swap happens under load.
            r = admin.post("/admin/reload", json={"force": True})
            assert r.status_code == 200, r.text
            assert r.json()["versions"]["champion"] == "2" and r.json()["aliases"]["champion"]["to"] == "2"
            time.sleep(0.5)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert len(seen) >= 3 and all(code == 200 for code, _ in seen), seen
    assert {v for _, v in seen} <= {"1", "2"}

    after = client.post("/forecast", json=probe).json()
    assert after["model_version"] == "2" and not any(i["cached"] for i in after["items"])  # cache is per version
    _check_forecast(after, [i["sku"] for i in probe["items"]], 6, "2")

    # Rolling back moves the alias again: the background poll picks it up by itself.
    assert reg.rollback().candidate == "1"
    deadline = time.time() + 60
    while client.post("/model_info").json()["aliases"]["champion"]["version"] != "1":
        assert time.time() < deadline, "the poll did not pick up the rollback in 60 s"
        time.sleep(0.5)
    again = client.post("/forecast", json=probe).json()
    assert again["model_version"] == "1" and all(i["cached"] for i in again["items"])
