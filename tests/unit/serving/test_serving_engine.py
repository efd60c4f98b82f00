"""The serving engine without HTTP: forecast, cache, classify, orders, feedback and batch jobs on a fake
model, and the typed errors (with their status codes) it raises instead of answering."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from serving.bentos.batch import BatchLimits, JobStore
from serving.bentos.cache import LRUCache
from serving.bentos.engine import Engine
from serving.bentos.errors import Conflict, InvalidInput, ModelFailure, NotFound, NotReady, ServingError
from serving.bentos.outcomes import OutcomeStore
from serving.bentos.schemas import ClassifyRequest, ForecastRequest
from serving.bentos.schemas_ops import RecommendOrderRequest
from serving.bentos.traffic import Bandit, BanditConfig, FeedbackRequest
from stockml.settings import Settings
from training.classification.classes import demand_patterns
from training.router.predict import HistoryError


def _forecast_frame(history: pd.DataFrame, horizon: int, skip: frozenset[str] = frozenset()) -> pd.DataFrame:
    """A router-shaped answer: each SKU's mean, +-1 and +-2 for the 80/95 % bands."""
    rows = []
    for sku, g in history.groupby("unique_id"):
        if sku in skip:
            continue
        last = g["ds"].max()
        mean = float(g["y"].mean())
        for step in range(1, horizon + 1):
            rows.append(
                {
                    "unique_id": sku, "ds": last + pd.Timedelta(weeks=step), "step": step, "yhat": mean,
                    "lo80": max(0.0, mean - 1), "hi80": mean + 1, "lo95": max(0.0, mean - 2), "hi95": mean + 2,
                    "method": "Naive", "weights": json.dumps({"Naive": 1.0}), "confidence": 0.5,
                    "pattern": "smooth", "explanation": "fake",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


@dataclass
class FakeModel:
    name: str = "stockml-router"
    version: str = "1"
    run_id: str = "r1"
    alias: str = "champion"
    calls: list[int] = field(default_factory=list)
    skip: frozenset[str] = frozenset()
    refuse: bool = False
    router: Any = None

    def predict(self, history: pd.DataFrame, horizon: int) -> pd.DataFrame:
        self.calls.append(history["unique_id"].nunique())
        if self.refuse:
            raise HistoryError("no usable week")
        return _forecast_frame(history, horizon, self.skip)

    def info(self) -> dict[str, Any]:
        return {"version": self.version}


class FakeWatcher:
    name = "stockml-router"
    poll_s = 0.0
    last_check = None
    last_error: str | None = None
    reloads = 0

    def __init__(self, champion: FakeModel | None = None) -> None:
        self.models = {"champion": champion} if champion else {}

    @property
    def champion(self) -> FakeModel | None:
        return self.models.get("champion")

    def get(self, alias: str = "champion") -> FakeModel | None:
        return self.models.get(alias)

    def versions(self) -> dict[str, str | None]:
        return {a: (m.version if (m := self.models.get(a)) else None) for a in ("champion", "challenger")}

    def refresh(self, force: bool = False) -> dict[str, Any]:
        if self.champion is None:
            self.last_error = "stockml-router has no 'champion' alias in the registry"
        return {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _engine(tmp_path, champion: FakeModel | None = None) -> Engine:
    tmp_path.mkdir(parents=True, exist_ok=True)
    watcher = FakeWatcher(champion)
    store = OutcomeStore(f"sqlite:///{tmp_path / 'serving.db'}", flush_s=0)
    return Engine(
        Settings(home=tmp_path),
        watcher,  # type: ignore[arg-type]
        LRUCache(100),
        store,
        Bandit(store, watcher, BanditConfig(), seed=0),
        JobStore(tmp_path / "jobs"),
        BatchLimits(chunk_skus=2),
    )


def _parse(model, obj):
    """As the HTTP layer parses a body: JSON mode (the models are strict about JSON's types)."""
    return model.model_validate_json(json.dumps(obj))


def _items(*skus: str, weeks: int = 8) -> list[dict]:
    days = pd.date_range("2024-01-01", periods=weeks, freq="W-MON")
    return [
        {"sku": s, "history": [{"ds": str(d.date()), "y": float((i * 3 + k) % 5)} for i, d in enumerate(days)]}
        for k, s in enumerate(skus)
    ]


def _forecast_req(*skus: str, horizon: int = 4) -> ForecastRequest:
    return _parse(ForecastRequest, {"items": _items(*skus), "horizon": horizon})


def _raises(status: int, exc_type: type[ServingError], func, *args) -> ServingError:
    with pytest.raises(exc_type) as info:
        func(*args)
    assert info.value.status == status and info.value.body()["error"]
    return info.value


def test_no_champion_is_503_with_retry_after(tmp_path):
    engine = _engine(tmp_path)
    assert not engine.ready
    err = _raises(503, NotReady, engine.forecast, _forecast_req("A"))
    assert err.headers["Retry-After"] == "5" and "no champion" in err.body()["error"]
    _raises(503, NotReady, engine.forecast_cached, _forecast_req("A"))
    order = _parse(RecommendOrderRequest, {"items": [{**_items("A")[0], "on_hand": 1, "lead_time_weeks": 2}]})
    _raises(503, NotReady, engine.recommend_order, order)
    err = _raises(503, NotReady, engine.reload, True)
    assert err.body()["versions"] == {"champion": None, "challenger": None} and err.body()["registry_error"]


def test_forecast_then_cached_and_recorded(tmp_path):
    model = FakeModel()
    engine = _engine(tmp_path, model)
    req = _forecast_req("A", "B")
    assert engine.forecast_cached(req) is None  # nothing cached yet: the caller goes off the loop
    first = engine.forecast(req)
    assert model.calls == [2] and [i.sku for i in first.items] == ["A", "B"]
    assert not any(i.cached for i in first.items) and first.model_version == "1"
    assert [p.step for p in first.items[0].forecasts] == [1, 2, 3, 4]
    second = engine.forecast_cached(req)  # all in the in-process cache: answered without the model
    assert second is not None and all(i.cached for i in second.items) and model.calls == [2]
    assert {i.forecast_id for i in first.items}.isdisjoint(i.forecast_id for i in second.items)
    engine.outcomes.flush()
    stored = engine.outcomes.forecast(first.items[0].forecast_id)
    assert stored["sku"] == "A" and stored["model_version"] == "1"
    info = engine.model_info()
    assert info["ready"] and info["aliases"]["champion"] == {"version": "1"} and info["cache"] == "memory"


def test_unusable_history_is_422_and_missing_answer_500(tmp_path):
    engine = _engine(tmp_path, FakeModel(refuse=True))
    err = _raises(422, InvalidInput, engine.forecast, _forecast_req("A"))
    assert err.body()["detail"][0]["field"] == "items" and "history cannot be used" in err.body()["error"]
    engine = _engine(tmp_path / "b", FakeModel(skip=frozenset({"B"})))
    err = _raises(500, ModelFailure, engine.forecast, _forecast_req("A", "B"))
    assert "'B'" in err.body()["error"]


def test_classify_uses_the_library_rule(tmp_path):
    engine = _engine(tmp_path)  # no champion: the settings' rule
    req = _parse(ClassifyRequest, {"items": _items("A", "B", weeks=30)})
    out = engine.classify(req)
    assert out.rule_source == "settings" and [i.sku for i in out.items] == ["A", "B"]
    adi = pd.Series({i.sku: i.adi for i in out.items})
    cv2 = pd.Series({i.sku: i.cv2 for i in out.items})
    want = demand_patterns(adi, cv2, out.rule["adi_cutoff"], out.rule["cv2_cutoff"])
    assert [i.pattern for i in out.items] == list(want) and all(i.xyz in "XYZ" for i in out.items)


def test_recommend_order_from_the_forecast(tmp_path):
    model = FakeModel()
    engine = _engine(tmp_path, model)
    item = {**_items("A")[0], "on_hand": 0.0, "lead_time_weeks": 2, "review_period_weeks": 1}
    out = engine.recommend_order(_parse(RecommendOrderRequest, {"items": [item]}))
    rec = out.items[0]
    assert rec.sku == "A" and rec.weeks_covered == 3 and rec.order_qty >= rec.expected_demand > 0
    assert out.policy == "base-stock" and model.calls == [1]


def test_feedback_for_unknown_forecasts_is_404_with_the_state(tmp_path):
    engine = _engine(tmp_path, FakeModel())
    req = _parse(FeedbackRequest, {"items": [{"forecast_id": "nope", "actuals": [{"ds": "2024-03-04", "y": 1}]}]})
    err = _raises(404, NotFound, engine.feedback, req)
    body = err.body()
    assert body["items"] == [] and body["errors"][0]["field"] == "items[0].forecast_id" and "bandit" in body
    served = engine.forecast(_forecast_req("A"))
    point = served.items[0].forecasts[0]
    ok = _parse(
        FeedbackRequest,
        {"items": [{"forecast_id": served.items[0].forecast_id, "actuals": [{"ds": str(point.ds), "y": point.yhat}]}]},
    )
    done = engine.feedback(ok)
    assert done["items"][0]["reward"] == 1.0 and done["items"][0]["counted"] == 1


def test_batch_jobs_and_their_errors(tmp_path):
    engine = _engine(tmp_path, FakeModel())
    refused = engine.batch_submit(b"sku,y\nA,1\n", 4)  # a CSV that cannot be used: a job failed from the start
    assert refused.state == "failed" and "missing column(s) ['ds']" in refused.error and refused.skus_total == 0
    assert engine.batch_status(refused.job_id) == refused
    _raises(409, Conflict, engine.batch_result, refused.job_id, "csv")
    _raises(404, NotFound, engine.batch_status, "0" * 32)
    _raises(404, NotFound, engine.batch_result, "0" * 32, "csv")
    csv = (
        b"sku,ds,y\nA,2024-01-01,3\nA,2024-01-08,4\nB,2024-01-01,0\nB,2024-01-15,2.5\nC,2024-01-01,1\nC,2024-01-08,1\n"
    )
    job = engine.batch_submit(csv, 3)
    assert job.state == "queued" and job.skus_total == 3
    err = _raises(409, Conflict, engine.batch_result, job.job_id, "csv")
    assert err.body()["state"] == "queued"
    engine.batch.start()
    try:
        deadline = time.time() + 30
        while engine.batch_status(job.job_id).state != "done":
            assert time.time() < deadline, engine.batch_status(job.job_id)
            time.sleep(0.05)
    finally:
        engine.batch.stop()
    content, media, name = engine.batch_result(job.job_id, "csv")
    assert media.startswith("text/csv") and name == f"forecasts-{job.job_id}.csv"
    assert len(content.decode().strip().splitlines()) == 1 + 3 * 3


def test_the_http_layer_over_the_engine_in_process(tmp_path):
    """The FastAPI app over a real engine (no BentoML, no middlewares): the declared response models hold
    for what the engine returns, and each typed error becomes its status with the error body."""
    from asgi_client import ASGIClient

    from serving.bentos.http import build_app

    engine = _engine(tmp_path, FakeModel())
    c = ASGIClient(build_app(lambda: engine))
    info = c.post("/model_info")
    assert info.status_code == 200 and info.json()["ready"] and info.json()["reloads"] == 0
    assert c.post("/admin/reload", json={"force": False}).status_code == 200
    state = c.post("/bandit", json={})
    assert state.status_code == 200 and state.json()["traffic_shares"] == {"champion": 1.0, "challenger": 0.0}
    served = c.post("/forecast", json={"items": _items("A"), "horizon": 2}).json()
    fid, point = served["items"][0]["forecast_id"], served["items"][0]["forecasts"][0]
    ok = c.post(
        "/feedback", json={"items": [{"forecast_id": fid, "actuals": [{"ds": point["ds"], "y": point["yhat"]}]}]}
    )
    assert ok.status_code == 200 and ok.json()["items"][0]["counted"] == 1 and ok.json()["bandit"]["model"]
    posterior = ok.json()["bandit"]["posteriors"]["1"]
    assert posterior["n"] == 1 and isinstance(posterior["n"], int)
    unknown = c.post("/feedback", json={"items": [{"forecast_id": "x", "actuals": [{"ds": "2024-01-01", "y": 1}]}]})
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["field"] == "items"
    assert c.post("/batch_status", json={"job_id": "0" * 32}).status_code == 404
    empty = ASGIClient(build_app(lambda: _engine(tmp_path / "empty")))
    r = empty.post("/forecast", json={"items": _items("A")})
    assert r.status_code == 503 and r.headers["retry-after"] == "5" and "no champion" in r.json()["error"]
    assert ASGIClient(build_app(lambda: None)).post("/model_info").status_code == 503  # still starting


def test_model_info_says_whether_the_timesfm_checkpoint_is_here(tmp_path, monkeypatch):
    from asgi_client import ASGIClient

    from serving.bentos.http import build_app
    from training.forecasting import foundation

    monkeypatch.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path / "hf-cache"))  # empty HF cache
    engine = _engine(tmp_path, FakeModel())
    absent = ASGIClient(build_app(lambda: engine)).post("/model_info").json()["timesfm"]
    assert absent["available"] is False and absent["checkpoint"] is None
    assert "STOCKML_TIMESFM_CHECKPOINT" in absent["detail"]
    (tmp_path / "tfm").mkdir()
    (tmp_path / "tfm" / "model.safetensors").write_bytes(b"")
    foundation.configure(tmp_path / "tfm")  # what get_settings() does at the service's start
    here = engine.model_info()["timesfm"]
    assert here["available"] and here["source"] == "setting" and here["checkpoint"].endswith("model.safetensors")
