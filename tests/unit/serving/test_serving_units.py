"""Fast tests of the serving parts without a server: request schemas, API keys and rate limits,
the ASGI middlewares (through Starlette's TestClient), the forecast cache (LRU and a real
Redis on 127.0.0.1:6379 when one is running) and the model watcher's reload rules.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest
from asgi_client import ASGIClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.bentos import models as watcher_mod
from serving.bentos.auth import (
    KeyConfigError,
    KeyStore,
    RateLimiter,
    RedisRateLimiter,
    TokenBucket,
    digest,
    parse_entries,
)
from serving.bentos.cache import LRUCache, RedisCache, cache_key, history_hash, make_cache
from serving.bentos.errors import field_path, validation_body
from serving.bentos.http import build_app
from serving.bentos.middleware import ApiKeyMiddleware, BodyLimitMiddleware, ErrorShapeMiddleware
from serving.bentos.schemas import ForecastRequest, Observation, ReloadRequest
from serving.bentos.schemas_ops import FeedbackBody, RecommendOrderRequest


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- schemas


def _req(**kw) -> dict:
    base = {"items": [{"sku": "A", "history": [{"ds": "2024-01-01", "y": 1}, {"ds": "2024-01-08", "y": 0}]}]}
    return {**base, **kw}


def test_valid_request_and_defaults():
    r = ForecastRequest.model_validate_json(json.dumps(_req()))
    assert r.horizon == 13 and r.items[0].history[1].y == 0.0


@pytest.mark.parametrize(
    ("raw", "field", "kind"),
    [
        (json.dumps(_req(horizon=0)), "horizon", "greater_than_equal"),
        ('{"items": [{"sku": "A", "history": [{"ds": "2024-01-01", "y": NaN}, {"ds": "2024-01-08", "y": 1}]}]}',
         "items[0].history[0].y", "finite_number"),
        ('{"items": [{"sku": "A", "history": [{"ds": 1700000000, "y": 1}, {"ds": "2024-01-08", "y": 1}]}]}',
         "items[0].history[0].ds", "date_type"),
        ('{"items": [{"sku": "A", "history": [{"ds": "2024-01-01", "y": 1e13}, {"ds": "2024-01-08", "y": 1}]}]}',
         "items[0].history[0].y", "less_than_equal"),
        ('{"items": [{"sku": "A", "history": [{"ds": "1899-12-31", "y": 1}, {"ds": "2024-01-08", "y": 1}]}]}',
         "items[0].history[0].ds", "greater_than_equal"),
        ('{"items": [{"sku": "A", "history": []}]}', "items[0].history", "too_short"),
        ("{", "body", "json_invalid"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(raw, field, kind):
    with pytest.raises(ValidationError) as info:
        ForecastRequest.model_validate_json(raw)
    body = validation_body(info.value)
    assert (field, kind) in {(d["field"], d["type"]) for d in body["detail"]}
    assert body["error"].startswith("invalid request: ")


def test_a_long_history_keeps_its_last_weeks_and_one_week_is_accepted():
    old, recent = {"ds": "1990-01-01", "y": 1}, [{"ds": "2024-01-08", "y": 2}, {"ds": "2024-01-10", "y": 3}]
    r = ForecastRequest.model_validate_json(json.dumps({"items": [{"sku": "A", "history": [old, *recent]}]}))
    assert [str(o.ds) for o in r.items[0].history] == ["2024-01-08", "2024-01-10"]  # 1990 is > 1040 weeks back
    edge, before = {"ds": "2004-02-09", "y": 1}, {"ds": "2004-02-08", "y": 1}  # 1039 weeks before 2024-01-08
    r = ForecastRequest.model_validate_json(json.dumps({"items": [{"sku": "A", "history": [before, edge, *recent]}]}))
    assert [str(o.ds) for o in r.items[0].history] == ["2004-02-09", "2024-01-08", "2024-01-10"]  # 1040 weeks kept


def test_items_naming_the_same_sku_are_one_series():
    a1 = {"sku": "A", "history": [{"ds": "2024-01-01", "y": 1}]}
    b = {"sku": "B", "history": [{"ds": "2024-01-01", "y": 4}]}
    a2 = {"sku": "A", "history": [{"ds": "2024-01-08", "y": 2}]}
    r = ForecastRequest.model_validate_json(json.dumps({"items": [a1, b, a2]}))
    assert [i.sku for i in r.items] == ["A", "B"]
    assert [(str(o.ds), o.y) for o in r.items[0].history] == [("2024-01-01", 1.0), ("2024-01-08", 2.0)]
    order = {"on_hand": 1, "lead_time_weeks": 1}
    two = {"items": [{**a1, **order}, {**a2, **order, "on_hand": 5}]}
    o = RecommendOrderRequest.model_validate_json(json.dumps(two))
    assert [i.on_hand for i in o.items] == [1.0, 5.0]  # each item keeps its stock situation
    assert [(s.sku, len(s.history)) for s in o.series()] == [("A", 2)]  # one forecast for the sku


def test_feedback_items_naming_the_same_forecast_id_are_pooled():
    body = {"items": [{"forecast_id": "f", "actuals": [{"ds": "2024-01-01", "y": 1}]},
                      {"forecast_id": "g", "actuals": [{"ds": "2024-01-01", "y": 3}]},
                      {"forecast_id": "f", "actuals": [{"ds": "2024-01-08", "y": 2}]}]}  # fmt: skip
    req = FeedbackBody.model_validate_json(json.dumps(body)).request()
    assert [(i.forecast_id, [o.y for o in i.actuals]) for i in req.items] == [("f", [1.0, 2.0]), ("g", [3.0])]


@pytest.mark.parametrize(
    "ds",
    ["1899-12-31", "1900-01-01", "1999-02-28", "2000-02-29", "2001-02-29", "2024-13-01", "2024-00-10",
     "2024-01-32", "2200-12-31", "2201-01-01", "24-01-01", "2024-1-01", "2024-01-01T00:00:00", "02024-01-01"],
)  # fmt: skip
def test_the_published_date_pattern_and_format_are_what_is_accepted(ds):
    """The schema's ds (pattern + format date) accepts exactly the dates the service accepts."""
    import datetime as dt
    import re

    schema = ForecastRequest.model_json_schema()["$defs"]["Observation"]["properties"]["ds"]
    try:
        dt.date.fromisoformat(ds)
        calendar = len(ds) == 10
    except ValueError:
        calendar = False
    published = bool(re.fullmatch(schema["pattern"].strip("^$"), ds)) and calendar
    try:
        Observation.model_validate_json(json.dumps({"ds": ds, "y": 1}))
        accepted = True
    except ValidationError:
        accepted = False
    assert published == accepted, (ds, published, accepted)


def test_reload_force_is_a_json_boolean():
    assert ReloadRequest.model_validate_json('{"force": true}').force is True
    with pytest.raises(ValidationError):
        ReloadRequest.model_validate_json('{"force": 0}')


def test_field_path():
    assert field_path(("items", 0, "history", 3, "y")) == "items[0].history[3].y"
    assert field_path(()) == "body"


# ---------------------------------------------------------------- keys and rate limits


def test_key_entries():
    keys = parse_entries("a1:user, b2:admin:5\n# comment\nc3:USER # trailing", "test")
    by_role = sorted((k.role, k.rate_per_s) for k in keys.values())
    assert by_role == [("admin", 5.0), ("user", None), ("user", None)]
    assert all(len(k.key_id) == 12 for k in keys.values())
    for bad in ("s3cr3t", ":user", "s3cr3t:root", "s3cr3t:user:fast", "s3cr3t:user:0", "s3cr3t:user:1:2"):
        with pytest.raises(KeyConfigError) as info:
            parse_entries(bad, "test")
        assert "s3cr3t" not in str(info.value)  # never echo the key


def test_key_file_is_reread_when_it_changes(tmp_path):
    f = tmp_path / "keys"
    f.write_text("first:user\n")
    store = KeyStore("envkey:admin", f, check_every_s=0)
    assert store.lookup("first").role == "user" and store.lookup("envkey").is_admin
    assert store.lookup("second") is None
    f.write_text("second:admin\n")
    os.utime(f, (time.time() + 5, time.time() + 5))
    assert store.lookup("second").is_admin and store.lookup("first") is None
    f.write_text("broken")  # an invalid file keeps the keys already loaded
    os.utime(f, (time.time() + 10, time.time() + 10))
    assert store.lookup("second").is_admin


def test_token_bucket():
    b = TokenBucket(rate=2.0, burst=4.0)
    now = b.updated
    assert [b.take(now) for _ in range(4)] == [0.0] * 4
    assert b.take(now) == pytest.approx(0.5)
    assert b.take(now + 0.5) == 0.0  # one token back after 1/rate seconds


def test_rate_limiter_per_key_and_override():
    keys = parse_entries("fast:user,slow:user:1", "t")
    fast, slow = (next(k for k in keys.values() if k.rate_per_s == r) for r in (None, 1.0))
    limiter = RateLimiter(default_rate=100)
    assert sum(limiter.check(slow) == 0 for _ in range(10)) == 2  # burst 2 x 1/s
    assert all(limiter.check(fast) == 0 for _ in range(150))  # burst 200
    assert all(RateLimiter(0).check(fast) == 0 for _ in range(1000))  # rate 0: no limit


# ---------------------------------------------------------------- middlewares


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    key = request.scope.get("state", {}).get("api_key")
    return JSONResponse({"len": len(body), "sha": hash(body), "role": key.role if key else None})


_Client = ASGIClient


def _app(rate: float = 1000, max_body: int = 10_000) -> _Client:
    routes = [Route(p, _echo, methods=["GET", "POST"]) for p in ("/forecast", "/admin/reload", "/readyz", "/other")]
    app = Starlette(routes=routes)
    return _Client(_stack(app, rate, max_body))


def _stack(app, rate: float = 1000, max_body: int = 10_000):
    """``app`` behind the service's middlewares, in the service's order."""
    wrapped = BodyLimitMiddleware(app, {"/forecast"}, max_body_bytes=max_body)
    return ApiKeyMiddleware(wrapped, KeyStore("u:user,a:admin,s:user:1"), rate_limit_per_s=rate, disabled=False)


class _UnreachedEngine:
    """An engine the request must not reach (it was refused before)."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was called ({name}) for a request that should have been refused")


def test_error_shape_middleware_gives_plain_text_errors_the_error_body():
    """Starlette's own 404/405 (plain text, as BentoML's routes answer) become ErrorBody JSON, status and
    ``Allow`` kept; JSON errors and successes pass through byte for byte."""
    from starlette.responses import PlainTextResponse

    async def teapot(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("short and stout", status_code=418)

    routes = [Route("/forecast", _echo, methods=["POST"]), Route("/tea", teapot, methods=["GET"])]
    c = _Client(ErrorShapeMiddleware(Starlette(routes=routes)))
    missing = c.post("/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = c.get("/forecast")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"error": "Method Not Allowed"}
    assert int(wrong.headers["content-length"]) == len(wrong.content)
    assert c.get("/tea").json() == {"error": "short and stout"} and c.get("/tea").status_code == 418
    ok = c.post("/forecast", content=b"abc")
    assert ok.status_code == 200 and ok.json()["len"] == 3


def test_middleware_auth_roles_and_open_paths():
    c = _app()
    assert c.get("/readyz").status_code == 200
    assert c.post("/forecast", json=_req()).status_code == 401
    assert c.post("/forecast", json=_req(), headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.post("/admin/reload", headers={"Authorization": "Bearer u"}).status_code == 403
    r = c.post("/admin/reload", headers={"Authorization": "Bearer a"})
    assert r.status_code == 200 and r.json()["role"] == "admin"


def test_middleware_validation_size_and_replay():
    c = _app(max_body=2_000)
    auth = {"Authorization": "Bearer u", "Content-Type": "application/json"}
    raw = json.dumps(_req()).encode()
    r = c.post("/forecast", content=raw, headers=auth)
    assert r.status_code == 200 and r.json() == {"len": len(raw), "sha": hash(raw), "role": "user"}  # body intact
    api = _Client(_stack(build_app(lambda: _UnreachedEngine()), max_body=2_000))  # the real HTTP layer validates
    r = api.post("/forecast", content=json.dumps(_req(horizon=500)), headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "horizon"
    big = json.dumps(_req(pad="x" * 3_000))
    assert c.post("/forecast", content=big, headers=auth).status_code == 413

    async def chunks():  # no Content-Length: the limit applies to the bytes received
        for _ in range(10):
            yield b" " * 500

    assert c.post("/forecast", content=chunks(), headers=auth).status_code == 413
    assert c.post("/forecast", content=b"a=1", headers={**auth, "Content-Type": "text/csv"}).status_code == 415
    assert c.post("/other", content=b"not validated", headers=auth).status_code == 200


def test_middleware_rate_limit():
    c = _app()
    assert c.app.limiter.backend == "memory"  # no STOCKML_SERVING__REDIS_URL here: per worker
    codes = [c.post("/other", headers={"Authorization": "Bearer s"}).status_code for _ in range(5)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429, 429]
    assert c.post("/other", headers={"Authorization": "Bearer u"}).status_code == 200


def _worker(redis_url: str | None, keys: str, rate: float = 1000) -> ASGIClient:
    """One "worker": its own middleware instance (own in-process state) over a trivial app."""
    app = Starlette(routes=[Route("/other", _echo, methods=["POST"])])
    return ASGIClient(ApiKeyMiddleware(app, KeyStore(keys), rate_limit_per_s=rate, disabled=False, redis_url=redis_url))


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_rate_limit_shared_by_workers_through_redis():
    pytest.importorskip("redis")
    key = f"k{uuid.uuid4().hex}"  # a fresh key id: fresh counters in a shared Redis
    w1, w2 = (_worker("redis://127.0.0.1:6379/0", f"{key}:user:2") for _ in range(2))
    assert w1.app.limiter.backend == "redis"
    limit, window_ms = RedisRateLimiter.window(2.0)
    assert (limit, window_ms) == (4, 2000)  # burst 2 x rate, long-run rate 2/s
    # start at the beginning of a window, so the requests below fall in one
    time.sleep((window_ms - int(time.time() * 1000) % window_ms) / 1000 + 0.01)
    hdr = {"Authorization": f"Bearer {key}"}
    codes = [(w1 if i % 2 else w2).post("/other", headers=hdr) for i in range(6)]
    assert [r.status_code for r in codes] == [200] * 4 + [429] * 2  # 4 in all, across both workers
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 2
    # per worker, each would have let its own burst through: 2 workers x 4
    mem = [_worker(None, f"{key}:user:2") for _ in range(2)]
    assert sum((mem[i % 2]).post("/other", headers=hdr).status_code == 200 for i in range(10)) == 8
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    names = r.keys(f"stockml:ratelimit:{digest(key)[:12]}:*")
    assert names and all(0 < r.pttl(n) <= window_ms + 1000 for n in names)  # counters expire by themselves


def test_redis_rate_limiter_down_falls_back_per_worker():
    pytest.importorskip("redis")
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = _worker(f"redis://127.0.0.1:{port}/0", "s:user:1")
    codes = [w.post("/other", headers={"Authorization": "Bearer s"}).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # the in-process bucket (burst 2) answers; never a 5xx
    assert w.app.limiter._down_until > 0


# ---------------------------------------------------------------- cache


def test_history_hash_and_keys():
    a = history_hash([("2024-01-01", 1.0), ("2024-01-08", 2.0)])
    assert a == history_hash([("2024-01-08", 2), ("2024-01-01", 1)])  # order and int/float do not matter
    assert a != history_hash([("2024-01-01", 1.0), ("2024-01-08", 2.5)])
    k = cache_key("m", "1", "run-a", "SKU", a, 13)
    assert k != cache_key("m", "1", "run-b", "SKU", a, 13) != cache_key("m", "1", "run-a", "SKU", a, 12)


def test_lru_evicts_least_recently_used():
    c = LRUCache(2)
    c.set_many({"a": 1, "b": 2})
    assert c.get_many(["a"]) == {"a": 1}  # a is now the most recent
    c.set_many({"c": 3})
    assert c.get_many(["a", "b", "c"]) == {"a": 1, "c": 3}


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
def test_redis_cache_round_trip():
    pytest.importorskip("redis")
    c = make_cache("redis://127.0.0.1:6379/0", 10, ttl_s=30)
    assert c.backend == "redis"
    key = f"stockml:forecast:test:{uuid.uuid4()}"
    value = {"method": "TSB", "forecasts": [{"ds": "2024-01-01", "yhat": 1.5}]}
    c.set_many({key: value})
    assert c.get_many([key, key + "-missing"]) == {key: value}
    assert 0 < c.client.ttl(key) <= 30
    c.client.delete(key)


def test_redis_down_falls_back_to_memory():
    pytest.importorskip("redis")
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = RedisCache(f"redis://127.0.0.1:{port}/0", ttl_s=30, retry_s=60)
    c.set_many({"k": {"v": 1}})
    assert c.get_many(["k"]) == {"k": {"v": 1}}  # served by the in-process fallback


# ---------------------------------------------------------------- model watcher


# the watcher's loads, swaps and polling run on a real registry: tests/integration/test_model_watcher.py


def test_credentials_are_redacted_from_registry_errors():
    text = "cannot reach postgresql://mlflow:s3cret@db:5432/mlflow or https://u:tok@host/x; sqlite:////tmp/a.db"
    out = watcher_mod.redact(text)
    assert "s3cret" not in out and "tok" not in out and "postgresql://***@db:5432" in out
    assert out.endswith("sqlite:////tmp/a.db")


# ---------------------------------------------------------------- request path of /forecast (issue 5)


def test_each_body_is_validated_once_in_json_mode(monkeypatch):
    """The HTTP layer parses and validates a body once (pydantic's JSON mode: strict fields take JSON's types,
    a date as an ISO string) and hands that very model to the engine: FastAPI does not validate it again."""
    parsed = []
    original = ForecastRequest.model_validate_json.__func__

    def recording(cls, raw, **kw):
        parsed.append(original(cls, raw, **kw))
        return parsed[-1]

    monkeypatch.setattr(ForecastRequest, "model_validate_json", classmethod(recording))
    got = []

    class Engine:
        def forecast_cached(self, req):
            got.append(req)
            raise RuntimeError("stop here")

    c = _Client(build_app(lambda: Engine()))
    raw = json.dumps(_req(horizon=5)).encode()
    with pytest.raises(RuntimeError, match="stop here"):
        c.post("/forecast", content=raw, headers={"Content-Type": "application/json"})
    assert len(parsed) == 1 and got == parsed and got[0] is parsed[0] and got[0].horizon == 5
    assert str(got[0].items[0].history[0].ds) == "2024-01-01"


def _served_row(sku: str = "A"):
    from serving.bentos.outcomes import ServedForecast

    return ServedForecast(str(uuid.uuid4()), sku, "m", "1", "champion", 2, 2.0, {"2024-01-01": 10.0})


def test_outcome_store_writes_served_forecasts_behind(tmp_path):
    from sqlalchemy import create_engine

    from serving.bentos.outcomes import OutcomeStore

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = OutcomeStore(url, flush_s=60)  # a long interval: nothing is written by the timer during the test
    other = OutcomeStore(url, flush_s=0)  # another worker on the same database
    f = _served_row()
    assert store.enqueue_forecasts([f]) == 1 and store.pending() == 1
    assert other.forecast(f.forecast_id) is None  # queued, not written yet
    scored = store.score("m", [(f.forecast_id, [("2024-01-01", 10.0)])])  # the same worker flushes first
    assert scored[0].counted == 1 and scored[0].reward == 1.0 and store.pending() == 0
    assert other.forecast(f.forecast_id)["sku"] == "A"

    # a failed batch insert keeps the rows for the next flush
    good_engine, store.engine = store.engine, create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    g = _served_row("B")
    store.enqueue_forecasts([g])
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        store.flush()
    assert store.pending() == 1
    store.engine = good_engine

    store.close()  # a graceful stop writes what is queued
    assert store.pending() == 0 and other.forecast(g.forecast_id)["sku"] == "B"
    h = _served_row("C")
    store.enqueue_forecasts([h])  # after close: written at once
    assert other.forecast(h.forecast_id)["sku"] == "C"

    timed = OutcomeStore(url, flush_s=0.05)  # the background writer flushes by itself
    k = _served_row("D")
    timed.enqueue_forecasts([k])
    deadline = time.time() + 10
    while other.forecast(k.forecast_id) is None:
        assert time.time() < deadline, "the writer thread did not flush"
        time.sleep(0.02)
    timed.close()
