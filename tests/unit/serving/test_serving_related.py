"""/classify returns each SKU's related products (from stock_related through the source connection)."""

from __future__ import annotations

import json

import pandas as pd

from serving.bentos.batch import BatchLimits, JobStore
from serving.bentos.cache import LRUCache
from serving.bentos.engine import Engine
from serving.bentos.outcomes import OutcomeStore
from serving.bentos.related import RelatedLookup
from serving.bentos.schemas import ClassifyRequest
from serving.bentos.traffic import Bandit, BanditConfig
from stockml.settings import Settings

RULES = {"A": [{"sku": "B", "confidence": 0.8, "lift": 12.5}, {"sku": "C", "confidence": 0.3, "lift": 4.0}]}


class NoModels:
    champion = None

    def get(self, alias: str = "champion"):
        return None

    def versions(self):
        return {"champion": None, "challenger": None}

    def start(self) -> None: ...

    def stop(self) -> None: ...


def _engine(tmp_path, related: RelatedLookup | None) -> Engine:
    watcher = NoModels()
    store = OutcomeStore(f"sqlite:///{tmp_path / 'serving.db'}", flush_s=0)
    return Engine(
        Settings(home=tmp_path),
        watcher,  # type: ignore[arg-type]
        LRUCache(10),
        store,
        Bandit(store, watcher, BanditConfig(), seed=0),  # type: ignore[arg-type]
        JobStore(tmp_path / "jobs"),
        BatchLimits(),
        related,
    )


def _items(*skus: str) -> list[dict]:
    days = pd.date_range("2024-01-01", periods=20, freq="W-MON")
    return [{"sku": s, "history": [{"ds": str(d.date()), "y": float(i % 3)} for i, d in enumerate(days)]} for s in skus]


def test_classify_lists_related_products_and_an_empty_list_when_none(tmp_path):
    calls = []
    lookup = RelatedLookup(lambda: calls.append(1) or RULES, ttl_s=3600)
    engine = _engine(tmp_path, lookup)
    out = engine.classify(ClassifyRequest.model_validate_json(json.dumps({"items": _items("A", "Z")})))
    a, z = out.items
    assert [r.model_dump() for r in a.related] == RULES["A"] and z.related == []
    engine.classify(ClassifyRequest.model_validate_json(json.dumps({"items": _items("A")})))
    assert calls == [1]  # kept for ttl_s, not read per request


def test_a_failed_read_keeps_the_previous_rules(tmp_path):
    state = {"fail": False}

    def load():
        if state["fail"]:
            raise RuntimeError("source down")
        return RULES

    lookup = RelatedLookup(load, ttl_s=0)
    assert lookup.get() == RULES
    state["fail"] = True
    assert lookup.get() == RULES
    assert (
        _engine(tmp_path, None)
        .classify(ClassifyRequest.model_validate_json(json.dumps({"items": _items("A")})))
        .items[0]
        .related
        == []
    )


def test_the_http_answer_and_the_openapi_schema_carry_related(tmp_path):
    from asgi_client import ASGIClient

    from serving.bentos.http import build_app

    engine = _engine(tmp_path, RelatedLookup(lambda: RULES))
    c = ASGIClient(build_app(lambda: engine))
    r = c.post("/classify", json={"items": _items("A", "Z")})
    assert r.status_code == 200
    assert r.json()["items"][0]["related"] == RULES["A"] and r.json()["items"][1]["related"] == []
    schemas = build_app(lambda: engine).openapi()["components"]["schemas"]
    assert "related" in schemas["SkuClass"]["properties"]
    assert set(schemas["RelatedProduct"]["properties"]) == {"sku", "confidence", "lift"}
