"""System tests of the operations endpoints (``/recommend_order``, ``/batch*``) over real HTTP.

Same set-up as :mod:`test_serving`: a small router registered in a temporary SQLite registry (promoted
to ``champion`` straight away here) and ``bentoml serve`` as a subprocess on a free port.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from serving_helpers import (
    START_TIMEOUT_S,
    assert_xlsx_matches_csv,
    auth,
    bentoml_serve,
    champion_registry,
    forecast_items,
    register_agent_champion,
    service_env,
    wait_ready,
)

from stockml.connections import sqlite_conn_json
from training.data.store import OutputKey, write_output

pytestmark = pytest.mark.slow

EXPERIMENT = "stockml-router-serving-test"
USER = "ops-user-key"
MAX_UPLOAD = 200_000


PUBLISHED_SKUS = 3  # the first SKUs of the catalogue, published in the service's source database
ON_HAND = 7.0


def _publish(db: Path, demand: pd.DataFrame, products: pd.DataFrame) -> str:
    """The source database as an ingest leaves it: products, and the weekly demand and inventory of the first
    ``PUBLISHED_SKUS`` SKUs under the output key of their last week. Returns that week."""
    skus = list(demand["unique_id"].drop_duplicates())[:PUBLISHED_SKUS]
    part = demand[demand["unique_id"].isin(skus)].rename(columns={"unique_id": "sku"})
    last = part["ds"].max()
    key = OutputKey.of("stock_ingest", last)
    engine = sa.create_engine(f"sqlite:///{db}")
    products.to_sql("products", engine, index=False)
    write_output(engine, "stock_weekly_demand", part, key, "ingest-1")
    inventory = part[["sku", "ds"]].assign(on_hand=ON_HAND, receipts=0.0, censored=False)
    write_output(engine, "stock_weekly_inventory", inventory, key, "ingest-1")
    engine.dispose()
    return key.cutoff_week


@pytest.fixture(scope="module")
def ops_server(router_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving-ops")
    week = _publish(tmp / "source.db", router_data["demand"], router_data["products"])
    with champion_registry(router_data, tmp, EXPERIMENT + "-ops") as uri:
        agent_version = register_agent_champion(uri, tmp)
        env = service_env(
            tmp,
            uri,
            f"{USER}:user",
            STOCKML_SERVING__POLL_S="0",
            STOCKML_BATCH__MAX_BYTES=str(MAX_UPLOAD),
            STOCKML_BATCH__CHUNK_SKUS="10",
            AIRFLOW_CONN_STOCKML_SOURCE=sqlite_conn_json(tmp / "source.db"),
            STOCKML_SOURCE_CONN_ID="stockml_source",
        )
        log_path = tmp / "bentoml-serve.log"
        with bentoml_serve(env, log_path) as (proc, url):
            wait_ready(url, proc, log_path, timeout=START_TIMEOUT_S)
            yield {
                "url": url,
                "log": log_path,
                "demand": router_data["demand"],
                "products": router_data["products"],
                "home": tmp / "home",
                "published_week": week,
                "agent_version": agent_version,
            }


@pytest.fixture(scope="module")
def client(ops_server):
    with httpx.Client(base_url=ops_server["url"], headers=auth(USER), timeout=120) as c:
        yield c


# ---------------------------------------------------------------- /recommend_order


def test_recommend_order(client, ops_server):
    series = forecast_items(ops_server["demand"], 3)
    stock = [
        {"on_hand": 0.0, "lead_time_weeks": 4},
        {"on_hand": 5.0, "on_order": 2.0, "lead_time_weeks": 2, "review_period_weeks": 2, "min_order_qty": 40.0},
        {"on_hand": 1e6, "lead_time_weeks": 8, "unit_cost": 3.5, "holding_cost_rate": 0.25},
    ]
    # base-stock asked for: this test checks its formula (the agent's answers are tested below)
    items = [{**s, **k, "policy": "base-stock"} for s, k in zip(series, stock, strict=True)]
    levels = {}
    for sl in (0.5, 0.8, 0.95, 0.99):
        r = client.post("/recommend_order", json={"items": [{**i, "service_level": sl} for i in items]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["policy"] == "base-stock" and body["model_version"] == "1" and body["formula"]
        out = {o["sku"]: o for o in body["items"]}
        assert list(out) == [i["sku"] for i in items]
        for item in items:
            o = out[item["sku"]]
            assert o["order_qty"] >= 0 and o["safety_stock"] >= 0 and o["expected_demand"] >= 0
            assert o["weeks_covered"] == item["lead_time_weeks"] + item.get("review_period_weeks", 1)
            assert o["order_up_to"] == pytest.approx(o["expected_demand"] + o["safety_stock"])
            position = item["on_hand"] + item.get("on_order", 0.0)
            assert o["order_qty"] >= o["order_up_to"] - position - 1e-6
            assert o["model_version"] == "1" and o["policy"] == "base-stock" and o["service_level"] == sl
        levels[sl] = out
        assert out[items[2]["sku"]]["order_qty"] == 0  # a million units on hand
        assert out[items[2]["sku"]]["holding_cost_per_week"] is not None and out[items[2]["sku"]]["order_value"] == 0
        moq = out[items[1]["sku"]]["order_qty"]
        assert moq == 0 or moq >= 40
    for sku in levels[0.5]:
        ups = [levels[sl][sku]["order_up_to"] for sl in (0.5, 0.8, 0.95, 0.99)]
        assert ups == sorted(ups), ups
    # the same forecast path as /forecast: its expected demand is the sum of the forecast's first L+R weeks
    fc = client.post("/forecast", json={"items": [series[0]], "horizon": 5}).json()["items"][0]["forecasts"]
    assert levels[0.95][series[0]["sku"]]["expected_demand"] == pytest.approx(sum(p["yhat"] for p in fc), rel=1e-9)


def test_forecast_and_orders_by_sku_from_the_published_tables(client, ops_server):
    """A caller that knows only the SKU: the published demand, inventory and products answer; the same
    history sent gives the same forecast; an unknown SKU is 404 naming it."""
    (sent,) = forecast_items(ops_server["demand"], 1)
    sku, week = sent["sku"], ops_server["published_week"]
    by_sku = client.post("/forecast", json={"items": [{"sku": sku}], "horizon": 6})
    assert by_sku.status_code == 200, by_sku.text
    published = by_sku.json()["items"][0]
    assert published["history_source"] == "published" and published["as_of_week"] == week
    r = client.post("/forecast", json={"items": [sent], "horizon": 6})
    with_history = r.json()["items"][0]
    assert with_history["history_source"] == "request" and with_history["as_of_week"] == week
    assert [p["yhat"] for p in published["forecasts"]] == [p["yhat"] for p in with_history["forecasts"]]
    short = {"sku": sku, "history": sent["history"][-30:-10]}  # a history in the request wins
    mine = client.post("/forecast", json={"items": [short], "horizon": 6}).json()["items"][0]
    assert mine["history_source"] == "request" and mine["as_of_week"] < week

    r = client.post("/recommend_order", json={"items": [{"sku": sku}, {"sku": sku, "on_hand": 0.0, "on_order": 3.0}]})
    assert r.status_code == 200, r.text
    mine, theirs = r.json()["items"]
    product = ops_server["products"].set_index("sku").loc[sku]
    assert mine["inventory_position"] == ON_HAND and mine["as_of_week"] == week
    assert mine["weeks_covered"] == int(product["lead_time_weeks"]) + 1
    assert mine["inputs"]["on_hand"].startswith("published: stock_weekly_inventory")
    assert mine["inputs"]["on_order"].startswith("assumed 0")
    assert mine["order_qty"] == 0 or mine["order_qty"] >= product["min_order_qty"]
    assert theirs["inventory_position"] == 3.0 and theirs["inputs"]["on_hand"] == "request"


def test_orders_by_sku_come_from_the_agent_champion_unless_base_stock_is_asked_for(client, ops_server):
    """The published products carry cost and price, so the stockml-rl-agent champion answers; asked for,
    base-stock does; both say why and what they are expected to cost."""
    (sent,) = forecast_items(ops_server["demand"], 1)
    sku = sent["sku"]
    r = client.post("/recommend_order", json={"items": [{"sku": sku}, {"sku": sku, "policy": "base-stock"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    agent, base = body["items"]
    assert agent["policy"] == "rl" and agent["agent_version"] == ops_server["agent_version"]
    assert f"stockml-rl-agent v{ops_server['agent_version']}" in agent["policy_reason"]
    assert agent["inputs"]["unit_price"] == "published: products"
    assert base["policy"] == "base-stock" and base["agent_version"] is None and "asked for" in base["policy_reason"]
    for item in (agent, base):
        assert item["expected_cost_per_period"] > 0 and item["order_qty"] >= 0
    assert body["policy"] == "base-stock+rl"

    unpublished = forecast_items(ops_server["demand"], PUBLISHED_SKUS + 1)[-1]  # its stock nobody has
    r = client.post("/recommend_order", json={"items": [{**unpublished, "lead_time_weeks": 2}]})
    assert r.status_code == 404 and r.json()["detail"][0]["field"] == "items[0].on_hand", r.text
    assert r.json()["sku"] == unpublished["sku"]
    for path in ("/forecast", "/recommend_order"):
        r = client.post(path, json={"items": [{"sku": "NOT-A-SKU"}]})
        assert r.status_code == 404, (path, r.text)
        assert r.json()["sku"] == "NOT-A-SKU" and "NOT-A-SKU" in r.json()["error"]
        assert r.json()["detail"][0]["field"] == "items[0].sku"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lead_time_weeks": 0}, "items[0].lead_time_weeks"),
        ({"lead_time_weeks": 53}, "items[0].lead_time_weeks"),
        ({"service_level": 0.9999}, "items[0].service_level"),
        ({"service_level": 0.4}, "items[0].service_level"),
        ({"on_hand": -1.0}, "items[0].on_hand"),
        ({"review_period_weeks": "2"}, "items[0].review_period_weeks"),
        ({"lead": 3}, "items[0].lead"),
    ],
)
def test_recommend_order_validation_is_422(client, ops_server, change, field):
    item = {**forecast_items(ops_server["demand"], 1)[0], "on_hand": 1.0, "lead_time_weeks": 2, **change}
    item = {k: v for k, v in item.items() if v is not None}
    r = client.post("/recommend_order", json={"items": [item]})
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["detail"]}, r.json()


# ---------------------------------------------------------------- /batch


def _csv(demand: pd.DataFrame, n: int) -> bytes:
    skus = list(demand["unique_id"].drop_duplicates())[:n]
    part = demand[demand["unique_id"].isin(skus)]
    out = pd.DataFrame({"sku": part["unique_id"], "ds": part["ds"].dt.strftime("%Y-%m-%d"), "y": part["y"]})
    return out.to_csv(index=False).encode()


def _wait(client: httpx.Client, job_id: str, timeout: float = 300) -> list[dict]:
    seen = []
    deadline = time.time() + timeout
    while True:
        r = client.post("/batch_status", json={"job_id": job_id})
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["state"] in ("done", "failed"):
            return seen
        assert time.time() < deadline, seen[-1]
        time.sleep(0.2)


def test_batch_round_trip(client, ops_server):
    raw = _csv(ops_server["demand"], 50)
    r = client.post("/batch", files={"file": ("demand.csv", raw, "text/csv")}, data={"horizon": "6"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["state"] == "queued" and job["skus_total"] == 50 and job["horizon"] == 6
    early = client.post("/batch_result", json={"job_id": job["job_id"]})
    assert early.status_code in (200, 409)
    seen = _wait(client, job["job_id"])
    assert seen[-1]["state"] == "done", seen[-1]
    assert seen[-1]["skus_done"] == 50 and seen[-1]["progress"] == 1.0 and seen[-1]["model_version"] == "1"
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)

    csv_r = client.post("/batch_result", json={"job_id": job["job_id"], "format": "csv"})
    assert csv_r.status_code == 200 and csv_r.headers["content-type"].startswith("text/csv")
    df = pd.read_csv(io.BytesIO(csv_r.content), dtype={"sku": str})
    assert len(df) == 50 * 6 and df["sku"].nunique() == 50
    assert (df["lo95"] <= df["hi95"]).all() and (df["model_version"].astype(str) == "1").all()
    assert sorted(df["step"].unique()) == list(range(1, 7))

    js = client.post("/batch_result", json={"job_id": job["job_id"], "format": "json"})
    assert js.status_code == 200
    body = js.json()
    assert body["job_id"] == job["job_id"] and len(body["rows"]) == 50 * 6
    assert {r["sku"] for r in body["rows"]} == set(df["sku"])

    # the same history through /forecast gives the same numbers
    first = df["sku"].iloc[0]
    one = [i for i in forecast_items(ops_server["demand"], 50) if i["sku"] == first]
    fc = client.post("/forecast", json={"items": one, "horizon": 6}).json()["items"][0]["forecasts"]
    assert df[df["sku"] == first]["yhat"].tolist() == pytest.approx([p["yhat"] for p in fc], rel=1e-9)

    xlsx = client.post("/batch_result", json={"job_id": job["job_id"], "format": "xlsx"})
    assert xlsx.status_code == 200, xlsx.text[:300]
    assert xlsx.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert xlsx.headers["content-disposition"] == f'attachment; filename="forecasts-{job["job_id"]}.xlsx"'
    assert_xlsx_matches_csv(xlsx.content, csv_r.content)  # read back with openpyxl and pandas

    bad = client.post("/batch_result", json={"job_id": job["job_id"], "format": "parquet"})
    assert bad.status_code == 422 and [d["field"] for d in bad.json()["detail"]] == ["format"], bad.text

    # persisted under STOCKML_HOME/serving_jobs/<id>/
    saved = json.loads((ops_server["home"] / "serving_jobs" / job["job_id"] / "job.json").read_text())
    assert saved["state"] == "done"


GOOD = "sku,ds,y\nA,2024-01-01,3\nA,2024-01-08,4\n"
MALFORMED = [
    ("empty file", b"", "empty"),
    ("header only", b"sku,ds,y\n", "no rows"),
    ("missing column", b"sku,ds\nA,2024-01-01\nA,2024-01-08\n", "missing column"),
    ("non-numeric y", (GOOD + "A,2024-01-15,lots\n").encode(), "y is not a finite number"),
    ("negative y", (GOOD + "A,2024-01-15,-2\n").encode(), "negative"),
    ("NaN y", (GOOD + "A,2024-01-15,nan\n").encode(), "finite"),
    ("bad date", (GOOD + "A,2024-02-30,1\n").encode(), "ds is not a date"),
    ("not a date", (GOOD + "A,yesterday,1\n").encode(), "ds is not a date"),
    ("one week only", b"sku,ds,y\nA,2024-01-01,3\nA,2024-01-02,4\n", "fewer than 2"),
    ("not utf-8", b"sku,ds,y\n\xff\xfe,2024-01-01,1\n", "UTF-8"),
    ("binary", bytes(range(256)) * 4, ""),
    ("too large", b"sku,ds,y\n" + b"A,2024-01-01,1\n" * (MAX_UPLOAD // 15 + 10), "larger than"),
]


@pytest.mark.parametrize(("case", "raw", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_csv_gives_a_failed_job(client, case, raw, reason):
    """The upload is schema-valid whatever its bytes, so a CSV that cannot be used is not refused: its job is
    ``failed`` from the start, ``error`` saying why. Only an upload over the size limit is a 422 (naming file)."""
    r = client.post("/batch", files={"file": ("x.csv", raw, "text/csv")})
    assert "Traceback" not in r.text
    if case == "too large":
        assert r.status_code == 422 and reason in r.json()["error"], (r.status_code, r.text[:300])
        return
    assert r.status_code == 200, (case, r.status_code, r.text[:300])
    job = r.json()
    assert job["state"] == "failed" and reason in job["error"] and job["skus_total"] == 0, job
    assert client.post("/batch_status", json={"job_id": job["job_id"]}).json() == job
    assert client.post("/batch_result", json={"job_id": job["job_id"]}).status_code == 409


def test_malformed_upload_envelope(client):
    ok = ("x.csv", GOOD.encode(), "text/csv")
    cases = [
        ({"files": {"file": ok}, "data": {"horizon": "0"}}, 422, "horizon"),
        ({"files": {"file": ok}, "data": {"horizon": "x"}}, 422, "horizon"),
        ({"files": {"other": ok}}, 422, "other"),
        ({"files": {"horizon": (None, "3")}}, 422, "file"),  # multipart without a file
        ({"data": {"horizon": "3"}}, 415, None),  # url-encoded form
        ({"content": GOOD.encode(), "headers": {"Content-Type": "text/csv"}}, 415, None),
        ({"json": {"file": GOOD}}, 415, None),
        ({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 422, None),
    ]
    for kwargs, status, field in cases:
        r = client.post("/batch", **kwargs)
        assert r.status_code == status, (kwargs, r.status_code, r.text[:300])
        if field:
            assert field in {d["field"] for d in r.json()["detail"]}, r.json()


def test_batch_status_and_result_errors(client):
    missing = "0" * 32
    assert client.post("/batch_status", json={"job_id": missing}).status_code == 404
    assert client.post("/batch_result", json={"job_id": missing}).status_code == 404
    for body in ({"job_id": "../../etc"}, {}, {"job_id": missing, "format": "pdf"}, {"job_id": missing, "x": 1}):
        assert client.post("/batch_result", json=body).status_code == 422, body


# ---------------------------------------------------------------- the published contract (/docs.json)

JSON_POSTS = {
    "/forecast", "/classify", "/recommend_order", "/model_info", "/admin/reload", "/feedback", "/bandit",
    "/batch_status", "/batch_result",
}  # fmt: skip
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _component(doc: dict, ref: dict) -> dict:
    return doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


def _assert_error_body(doc: dict, body: dict) -> None:
    """A served error body has the documented ErrorBody shape."""
    schema = doc["components"]["schemas"]["ErrorBody"]
    assert set(schema["required"]) <= set(body) and isinstance(body["error"], str) and body["error"]
    detail_fields = set(doc["components"]["schemas"]["ErrorDetail"]["required"])
    for d in body.get("detail") or []:
        assert detail_fields <= set(d), d


def test_docs_json_documents_every_status_with_the_error_body(ops_server):
    with httpx.Client(base_url=ops_server["url"], timeout=30) as anon:  # the docs are open
        doc = anon.get("/docs.json").json()
    posts = {path: item["post"] for path, item in doc["paths"].items() if "post" in item}
    assert set(posts) == JSON_POSTS | {"/batch"}
    for path, op in posts.items():
        want = {"401", "415", "422", "429"} | ({"413"} if path in JSON_POSTS else set())
        if path.startswith("/admin/"):
            want.add("403")
        if path in ("/forecast", "/recommend_order", "/admin/reload"):
            want.add("503")
        if path in ("/forecast", "/recommend_order"):
            want.add("404")  # an unknown SKU sent without a history
        for code in want:
            assert op["responses"][code]["content"]["application/json"]["schema"] == ERROR_REF, (path, code)
        assert "400" not in op["responses"], path  # no answer BentoML's own validation would give
        media = "application/json" if path in JSON_POSTS else "multipart/form-data"
        assert media in op["requestBody"]["content"], path
    assert {"400", "422"}.isdisjoint(doc["paths"]["/readyz"].get("get", {}).get("responses", {}))
    with httpx.Client(base_url=ops_server["url"], timeout=30) as anon:  # the same routes, labelled OpenAPI 3.1
        own = anon.get("/openapi.json").json()
    assert own["openapi"].startswith("3.1")
    assert {p: set(own["paths"][p]["post"]["responses"]) for p in posts} == {
        p: set(op["responses"]) for p, op in posts.items()
    }


def test_what_the_schema_accepts_is_accepted_and_its_bounds_hold(client, ops_server):
    with httpx.Client(base_url=ops_server["url"], timeout=30) as anon:
        doc = anon.get("/docs.json").json()
    req = _component(doc, doc["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    series = doc["components"]["schemas"]["SeriesIn"]["properties"]
    obs = doc["components"]["schemas"]["Observation"]["properties"]
    h_max, sku_max, y_max = req["properties"]["horizon"]["maximum"], series["sku"]["maxLength"], obs["y"]["maximum"]
    assert (h_max, sku_max, y_max) == (104, 200, 1e12)
    h_max = int(h_max)  # BentoML's merged document writes bounds as floats (104.0); integer fields are strict
    hist = [{"ds": "2024-01-01", "y": 0.0}, {"ds": "2024-01-08", "y": y_max}]
    at_bounds = {"items": [{"sku": "s" * sku_max, "history": hist}], "horizon": h_max}
    r = client.post("/forecast", json=at_bounds)
    assert r.status_code == 200, r.text[:300]
    for change, field in (
        ({"horizon": h_max + 1}, "horizon"),
        ({"items": [{"sku": "s" * (sku_max + 1), "history": hist}]}, "items[0].sku"),
        (
            {"items": [{"sku": "A", "history": [hist[0], {"ds": "2024-01-08", "y": y_max * 10}]}]},
            "items[0].history[1].y",
        ),
    ):
        r = client.post("/forecast", json={**at_bounds, **change})
        assert r.status_code == 422 and field in {d["field"] for d in r.json()["detail"]}, (change, r.text[:300])
        _assert_error_body(doc, r.json())
    # an empty item list: the schema says minItems 1 for both, and the service refuses it, naming items
    order_req = doc["paths"]["/recommend_order"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for path, schema in (("/forecast", req), ("/recommend_order", _component(doc, order_req))):
        assert schema["properties"]["items"]["minItems"] == 1
        r = client.post(path, json={"items": []})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "items", (path, r.text[:300])
    # bodies the schema marks optional may be left out
    for path in ("/model_info", "/bandit"):
        assert not doc["paths"][path]["post"]["requestBody"].get("required", False)
        assert client.post(path).status_code == 200, path
    # the other documented error bodies are the ones served
    with httpx.Client(base_url=ops_server["url"], timeout=30) as anon:
        _assert_error_body(doc, anon.post("/forecast", json=at_bounds).json())  # 401
    r = client.post("/forecast", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    _assert_error_body(doc, r.json())


def test_server_log_has_no_traceback(ops_server):
    assert "Traceback" not in ops_server["log"].read_text()
