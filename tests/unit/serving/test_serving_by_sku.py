"""/forecast and /recommend_order by SKU alone: history, on hand, lead time, MOQ and unit cost from the
latest published tables of a SQLite source (through its hook), the request winning where it gives them;
404 naming an unknown SKU, or the input nobody has; 422 for an item without a sku."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pandas as pd
import pytest
from test_serving_engine import FakeModel, _engine, _parse

from serving.bentos.by_sku import ON_ORDER_ASSUMED, StockLookup
from serving.bentos.errors import NotFound
from serving.bentos.orders import Z80_UPPER
from serving.bentos.schemas import ForecastRequest
from serving.bentos.schemas_ops import RecommendOrderRequest
from stockml.connections import get_hook
from training.data.published import read_published_stock
from training.data.store import OutputKey, write_output

WEEKS = pd.date_range("2026-10-05", periods=7, freq="W-MON")  # the last: 2026-11-16
A_UNITS = [4.0, 0.0, 6.0, 2.0, 8.0, 4.0, 4.0]  # mean 4


@pytest.fixture
def source(tmp_path):
    """A SQLite source with products and two published cut-offs (the later one must be used)."""
    db = tmp_path / "source.db"
    hook = get_hook(str(db))
    engine = hook.get_sqlalchemy_engine()
    products = pd.DataFrame(
        {
            "sku": ["A", "B"], "name": "x", "category": "y", "unit_cost": [2.5, 1.0], "unit_price": [4.0, 2.0],
            "lead_time_weeks": [2, 1], "min_order_qty": [50, 0],
        }
    )  # fmt: skip
    products.to_sql("products", engine, index=False)
    old, new = OutputKey("stock_ingest", "2026-11-09"), OutputKey("stock_ingest", "2026-11-16")
    demand = pd.DataFrame({"sku": ["A"] * 7 + ["B"] * 7, "ds": list(WEEKS) * 2, "y": A_UNITS + [1.0] * 7})
    write_output(engine, "stock_weekly_demand", demand.assign(y=100.0), old, "r0")
    write_output(engine, "stock_weekly_demand", demand, new, "r1")
    inventory = demand[["sku", "ds"]].assign(on_hand=[3.0] * 7 + [float("nan")] * 7, receipts=0.0, censored=False)
    inventory.loc[6, "censored"] = True
    write_output(engine, "stock_weekly_inventory", inventory, new, "r1")
    engine.dispose()
    return hook


def _by_sku_engine(tmp_path, hook):
    engine = _engine(tmp_path / "engine", FakeModel())
    calls = []

    def load():
        calls.append(1)
        return read_published_stock(hook)

    engine.stock = StockLookup(load, ttl_s=3600)
    return engine, calls


def _history(units: list[float]) -> list[dict]:
    return [
        {"ds": str(d.date()), "y": y}
        for d, y in zip(pd.date_range("2026-06-01", periods=len(units), freq="W-MON"), units, strict=True)
    ]


def test_forecast_by_sku_uses_the_latest_published_demand_and_a_sent_history_wins(tmp_path, source):
    engine, calls = _by_sku_engine(tmp_path, source)
    body = {"items": [{"sku": "A"}, {"sku": "B", "history": _history([10.0, 20.0])}], "horizon": 2}
    a, b = engine.forecast(_parse(ForecastRequest, body)).items
    assert a.history_source == "published" and str(a.as_of_week) == "2026-11-16"
    assert [p.yhat for p in a.forecasts] == [4.0, 4.0]  # the fake model: the history's mean (not the old 100s)
    assert str(a.forecasts[0].ds) == "2026-11-23"
    assert b.history_source == "request" and str(b.as_of_week) == "2026-06-08"
    assert [p.yhat for p in b.forecasts] == [15.0, 15.0]
    engine.forecast(_parse(ForecastRequest, {"items": [{"sku": "A"}]}))
    assert calls == [1]  # the tables are kept for the TTL, not read per request


def test_a_request_that_sends_every_history_does_not_read_the_tables(tmp_path, source):
    engine, calls = _by_sku_engine(tmp_path, source)
    engine.forecast(_parse(ForecastRequest, {"items": [{"sku": "Z", "history": _history([1.0, 2.0])}]}))
    assert calls == []


def test_an_unknown_sku_is_404_naming_it(tmp_path, source):
    engine, _ = _by_sku_engine(tmp_path, source)
    with pytest.raises(NotFound) as info:
        engine.forecast(_parse(ForecastRequest, {"items": [{"sku": "A"}, {"sku": "NOPE"}]}))
    body = info.value.body()
    assert info.value.status == 404 and body["sku"] == "NOPE" and "'NOPE'" in body["error"]
    assert body["detail"][0]["field"] == "items[1].sku"
    with pytest.raises(NotFound):
        engine.recommend_order(_parse(RecommendOrderRequest, {"items": [{"sku": "NOPE", "on_hand": 1.0}]}))
    # Order items naming the same SKU share one forecast; the 404 still names the index the client sent.
    items = [{"sku": "A"}, {"sku": "A", "on_hand": 0.0}, {"sku": "NOPE", "on_hand": 1.0}]
    with pytest.raises(NotFound) as info:
        engine.recommend_order(_parse(RecommendOrderRequest, {"items": items}))
    assert info.value.body()["detail"][0]["field"] == "items[2].sku"


def test_recommend_order_by_sku_takes_stock_lead_time_moq_and_cost_from_the_tables(tmp_path, source):
    engine, _ = _by_sku_engine(tmp_path, source)
    (rec,) = engine.recommend_order(_parse(RecommendOrderRequest, {"items": [{"sku": "A"}]})).items
    # forecast 4/week with hi80 = 5: over L + R = 2 + 1 weeks D = 12, sigma = sqrt(3) / z(0.9)
    sigma = math.sqrt(3) / Z80_UPPER
    up_to = 12 + NormalDist().inv_cdf(0.95) * sigma
    assert rec.inventory_position == 3.0 and rec.weeks_covered == 3
    assert rec.order_up_to == pytest.approx(up_to)
    assert math.ceil(up_to - 3) < 50 and rec.order_qty == 50.0  # raised to the products' MOQ
    assert rec.order_value == pytest.approx(125.0)  # 50 x unit cost 2.5
    assert rec.history_source == "published" and str(rec.as_of_week) == "2026-11-16"
    assert rec.inputs["on_hand"] == "published: stock_weekly_inventory, week 2026-11-16, a stock-out week"
    assert rec.inputs["lead_time_weeks"] == rec.inputs["min_order_qty"] == "published: products"
    assert rec.inputs["on_order"] == ON_ORDER_ASSUMED


def test_recommend_order_values_in_the_request_win(tmp_path, source):
    engine, _ = _by_sku_engine(tmp_path, source)
    item = {"sku": "A", "on_hand": 100.0, "on_order": 5.0, "lead_time_weeks": 1, "min_order_qty": 1.0}
    (rec,) = engine.recommend_order(_parse(RecommendOrderRequest, {"items": [item]})).items
    assert rec.inventory_position == 105.0 and rec.weeks_covered == 2 and rec.order_qty == 0.0
    assert {k: rec.inputs[k] for k in ("on_hand", "on_order", "lead_time_weeks", "min_order_qty")} == dict.fromkeys(
        ("on_hand", "on_order", "lead_time_weeks", "min_order_qty"), "request"
    )
    assert rec.inputs["unit_cost"] == "published: products" and rec.history_source == "published"


def test_on_hand_or_lead_time_nobody_has_is_404_naming_the_field(tmp_path, source):
    engine, _ = _by_sku_engine(tmp_path, source)
    with pytest.raises(NotFound) as info:  # B is published, but its stock was never counted
        engine.recommend_order(_parse(RecommendOrderRequest, {"items": [{"sku": "A", "on_hand": 1.0}, {"sku": "B"}]}))
    assert info.value.body()["detail"][0]["field"] == "items[1].on_hand" and info.value.body()["sku"] == "B"
    with pytest.raises(NotFound) as info:  # an unpublished SKU with a history: no lead time anywhere
        engine.recommend_order(
            _parse(RecommendOrderRequest, {"items": [{"sku": "Z", "on_hand": 1.0, "history": _history([1.0])}]})
        )
    assert info.value.body()["detail"][0]["field"] == "items[0].lead_time_weeks"


def test_http_answers_and_the_openapi(tmp_path, source):
    from asgi_client import ASGIClient

    from serving.bentos.http import build_app

    engine, _ = _by_sku_engine(tmp_path, source)
    app = build_app(lambda: engine)
    c = ASGIClient(app)
    r = c.post("/forecast", json={"items": [{"sku": "A"}], "horizon": 1})
    assert r.status_code == 200 and r.json()["items"][0]["as_of_week"] == "2026-11-16"
    r = c.post("/recommend_order", json={"items": [{"sku": "GONE"}]})
    assert r.status_code == 404 and r.json()["sku"] == "GONE" and "GONE" in r.json()["error"]
    r = c.post("/forecast", json={"items": [{"history": _history([1.0])}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "items[0].sku"
    spec = app.openapi()
    for path in ("/forecast", "/recommend_order"):
        assert "404" in spec["paths"][path]["post"]["responses"], path
    schemas = spec["components"]["schemas"]
    assert schemas["ForecastItem"]["required"] == ["sku"] and schemas["OrderItem"]["required"] == ["sku"]
    assert {"as_of_week", "history_source"} <= set(schemas["SkuForecast"]["required"])
    assert json.dumps(schemas["OrderRecommendationOut"]).count("inputs") >= 1
