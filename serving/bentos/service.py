"""``StockForecaster``: the stockml router from the MLflow registry behind a BentoML 1.4 HTTP API.

Run it from the repository root::

    STOCKML_API_KEYS="s3cret:user,adm1n:admin" bentoml serve serving.bentos.service:StockForecaster --port 3000

Endpoints (all POST + JSON, bearer key needed; health, readiness, metrics and docs are open):

- ``/forecast``: ``{"items": [{"sku", "history": [{"ds", "y"}, ...]}, ...], "horizon": 13}`` →
  per SKU the weekly forecasts with 80/95 % intervals, method, weights, confidence, pattern,
  explanation, ``model_version`` and a ``forecast_id`` (for feedback later); ``cached`` says
  whether it came from the cache.
- ``/classify``: the same items → per SKU pattern (smooth/erratic/intermittent/lumpy), ADI, CV²,
  CV and XYZ, from the series alone. ABC is *not* returned: it ranks a SKU's value against the
  whole catalogue, which a request about some series does not carry (the batch pipeline has it).
- ``/model_info``: the versions loaded per alias, when, and the last registry error.
- ``/admin/reload`` (admin key): check the registry now and swap in moved aliases
  (``{"force": true}`` reloads even when the version did not change).
- ``/recommend_order``: items with history plus ``on_hand``, ``lead_time_weeks`` (and optionally
  ``on_order``, ``review_period_weeks``, ``service_level``, costs, ``min_order_qty``) → per SKU the
  base-stock order quantity, order-up-to level, safety stock and expected demand, from the
  champion's forecast (same path and cache as ``/forecast``; policy in :mod:`serving.bentos.orders`).
- ``/batch`` (multipart upload, field ``file``: CSV ``sku,ds,y``; optional ``horizon``) → a job id;
  ``/batch_status`` ``{"job_id"}`` → state and progress; ``/batch_result`` ``{"job_id", "format":
  "csv"|"json"|"xlsx"}`` → the forecasts file. Jobs run in a background thread and are kept under
  ``$STOCKML_HOME/serving_jobs/`` (see :mod:`serving.bentos.batch`).
- ``/feedback``: ``{"items": [{"forecast_id", "actuals": [{"ds", "y"}]}]}`` → reward per forecast,
  Beta posteriors per version, and the bandit's decision; ``/bandit``: posteriors, P(challenger
  better), traffic shares, decisions. With a challenger loaded, each ``/forecast`` request is served
  by champion or challenger by Thompson sampling (see :mod:`serving.bentos.routing`).
- ``GET /healthz``, ``/livez``; ``GET /readyz`` (503 until the champion is loaded); ``GET /metrics``.

Errors: 401/403 (key, role), 413 (body too large), 415 (not JSON), 422 (validation: the body
names each failing field), 429 (rate limit), 503 (no champion loaded). Never a traceback.

Configuration: ``STOCKML_HOME`` / ``STOCKML_MLFLOW_TRACKING_URI`` (the registry, via
:class:`stockml.settings.Settings`), and the ``STOCKML_SERVING_*``, ``STOCKML_API_KEYS[_FILE]``,
``STOCKML_RATE_LIMIT_PER_S``, ``STOCKML_REDIS_URL`` variables in :mod:`serving.bentos.config`.
Caches and rate limits are per worker process (one worker by default) unless ``STOCKML_REDIS_URL``
is set: then the forecast cache and the per-key rate limits are shared by all workers through Redis.
Served forecasts are recorded behind the request (``STOCKML_SERVING_RECORD_FLUSH_S``, see
:mod:`serving.bentos.outcomes`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
import bentoml
import mlflow
import numpy as np
import pandas as pd
from starlette.responses import JSONResponse, Response

from serving.bentos.batch import BatchLimits, BatchRunner, CsvError, FormatUnavailable, JobStore, UploadMiddleware
from serving.bentos.batch import parse_csv as parse_batch_csv
from serving.bentos.batch import render as render_batch
from serving.bentos.cache import cache_key, history_hash, make_cache
from serving.bentos.config import ServingConfig
from serving.bentos.middleware import ApiKeyMiddleware, RequestValidationMiddleware, reuse_validated_bodies
from serving.bentos.models import ModelWatcher, redact
from serving.bentos.orders import POLICY, OrderInput, recommend
from serving.bentos.outcomes import OutcomeStore
from serving.bentos.routing import (
    Bandit,
    BanditConfig,
    FeedbackItems,
    FeedbackRequest,
    feedback_items,
    record_served,
    scored_json,
)
from serving.bentos.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    EmptyRequest,
    ForecastRequest,
    ForecastResponse,
    Horizon,
    Items,
    ReloadRequest,
    SeriesIn,
    SkuClass,
    SkuForecast,
    error_body,
)
from serving.bentos.schemas_ops import (
    BatchResultRequest,
    BatchStatusRequest,
    JobId,
    OrderItem,
    OrderRecommendationOut,
    RecommendOrderRequest,
    RecommendOrderResponse,
)
from stockml.settings import get_settings
from training.router.predict import HistoryError, regularise
from training.router.train import PatternRule, router_features

log = logging.getLogger("stockml.serving")

CACHE_LOOKUPS = bentoml.metrics.Counter(
    name="stockml_forecast_cache_total",
    documentation="Per-SKU forecast cache lookups by result (hit/miss)",
    labelnames=["result"],
)
SKUS_FORECAST = bentoml.metrics.Counter(
    name="stockml_forecast_skus_total",
    documentation="SKUs forecast, by model version",
    labelnames=["model_version"],
)
XYZ = {0.0: "X", 1.0: "Y", 2.0: "Z"}
ABC_NOTE = (
    "pattern, ADI, CV² and XYZ come from each series alone; ABC needs the whole catalogue's value "
    "ranking, so it is only available from the batch classification."
)


def _num(v: Any) -> float | None:
    """A JSON-safe float: NaN/inf become null."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _frame(items: list[SeriesIn]) -> pd.DataFrame:
    n = sum(len(i.history) for i in items)
    uid = np.empty(n, dtype=object)
    ds = np.empty(n, dtype="datetime64[ns]")
    y = np.empty(n, dtype="float64")
    k = 0
    for item in items:
        m = len(item.history)
        uid[k : k + m] = item.sku
        ds[k : k + m] = [np.datetime64(o.ds, "ns") for o in item.history]
        y[k : k + m] = [o.y for o in item.history]
        k += m
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})


def _per_sku(fc: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Router output (long) -> {sku: cacheable JSON-able forecast without ids}."""
    out: dict[str, dict[str, Any]] = {}
    fc = fc.sort_values(["unique_id", "step"])
    for sku, part in fc.groupby("unique_id", sort=False):
        first = part.iloc[0]
        points = [
            {
                "ds": pd.Timestamp(ds).date().isoformat(),
                "step": int(step),
                **{c: _num(v) for c, v in zip(("yhat", "lo80", "hi80", "lo95", "hi95"), vals, strict=True)},
            }
            for ds, step, *vals in zip(
                part["ds"],
                part["step"],
                part["yhat"],
                part["lo80"],
                part["hi80"],
                part["lo95"],
                part["hi95"],
                strict=True,
            )
        ]
        try:
            weights = {str(k): float(v) for k, v in json.loads(first["weights"]).items()}
        except (TypeError, ValueError):
            weights = {}
        out[str(sku)] = {
            "method": str(first["method"]),
            "weights": weights,
            "confidence": _num(first["confidence"]),
            "pattern": str(first["pattern"]),
            "explanation": str(first["explanation"]),
            "forecasts": points,
        }
    return out


ORDER_FORMULA = (
    "S = sum(yhat, weeks 1..L+R) + z(service_level) * sqrt(sum(sigma_t^2)), sigma_t = (hi80_t - yhat_t) / z(0.90); "
    "order_qty = max(0, S - on_hand - on_order), rounded up to whole units and to min_order_qty"
)


def _enable_logging() -> None:
    """BentoML's server logging config disables loggers that existed before it and keeps the root at
    WARNING: switch ours back on at INFO, so model loads, swaps and registry errors reach the server log."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "stockml" or name.startswith("stockml.serving")) and isinstance(logger, logging.Logger):
            logger.disabled = False
    logging.getLogger("stockml.serving").setLevel(logging.INFO)


def _unavailable(watcher: ModelWatcher) -> JSONResponse:
    return JSONResponse(
        error_body("no champion model is loaded yet", registry_error=watcher.last_error, model=watcher.name),
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _history_error(exc: HistoryError) -> JSONResponse:
    return JSONResponse(error_body(f"history cannot be used: {exc}", field="items"), status_code=422)


ON_LOOP_MAX_ITEMS = 32  # /forecast builds answers of up to this many SKUs on the event loop, bigger ones in a thread
THREADS = 4  # worker threads of the sync APIs (BentoML's `threads`), and the cap of /forecast's off-loop work


@bentoml.service(name="stockml_forecaster", traffic={"timeout": 120}, threads=THREADS)
class StockForecaster:
    """The router from ``models:/stockml-router@champion`` (and ``@challenger``), following alias moves."""

    def __init__(self) -> None:
        _enable_logging()
        self.settings = get_settings()
        self.config = ServingConfig.from_env()
        uri = self.settings.tracking_uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.models = ModelWatcher(self.config.model_name, self.config.poll_s)
        self.cache = make_cache(self.config.redis_url, self.config.cache_size, self.config.cache_ttl_s)
        self.outcomes = OutcomeStore.from_env(self.settings.home)  # served forecasts, feedback, posteriors
        self.bandit = Bandit(self.outcomes, self.models, BanditConfig.from_env(self.settings.promotion_tolerance))
        log.info(
            "StockForecaster: registry %s, model %s, poll %ss, cache %s",
            redact(uri),
            self.config.model_name,
            self.config.poll_s,
            self.cache.backend,
        )
        self.models.start()
        self.batch_limits = BatchLimits.from_env()
        self.jobs = JobStore(Path(self.settings.home) / "serving_jobs")
        self.batch = BatchRunner(self.jobs, self._batch_champion, self.batch_limits)
        self.batch.start()
        self._limiter: anyio.CapacityLimiter | None = None  # created on the event loop, at first use

    def __is_ready__(self) -> bool:
        return self.models.champion is not None

    @bentoml.on_shutdown
    def stop_polling(self) -> None:
        self.models.stop()
        self.batch.stop()
        self.outcomes.close()  # write the queued served-forecast records

    def _cache_keys(self, champ: Any, items: list[SeriesIn], horizon: int) -> dict[str, str]:
        return {
            item.sku: cache_key(
                champ.name,
                champ.version,
                champ.run_id,
                item.sku,
                history_hash([(o.ds.isoformat(), o.y) for o in item.history]),
                horizon,
            )
            for item in items
        }

    def _count_lookups(self, n_items: int, n_missing: int) -> None:
        CACHE_LOOKUPS.labels(result="hit").inc(n_items - n_missing)
        CACHE_LOOKUPS.labels(result="miss").inc(n_missing)

    def _compute(
        self, champ: Any, missing: list[SeriesIn], keys: dict[str, str], horizon: int
    ) -> tuple[dict[str, dict[str, Any]], float]:
        """Forecast the SKUs not in the cache and cache them; (values per SKU, seconds). Raises
        :class:`HistoryError` when the model cannot use a history."""
        t0 = time.perf_counter()
        fresh = _per_sku(champ.predict(_frame(missing), horizon))
        SKUS_FORECAST.labels(model_version=champ.version).inc(len(missing))
        self.cache.set_many({keys[sku]: value for sku, value in fresh.items()})
        return fresh, time.perf_counter() - t0

    def _forecast_values(
        self, champ: Any, items: list[SeriesIn], horizon: int
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, dict[str, Any]], float]:
        """The forecast path shared by ``/forecast`` and ``/recommend_order``: per SKU the cache key, the
        cached values found, the values computed for the others (then cached), and the compute time.
        Raises :class:`HistoryError` when the model cannot use a history."""
        keys = self._cache_keys(champ, items, horizon)
        hits = self.cache.get_many(list(keys.values()))
        missing = [item for item in items if keys[item.sku] not in hits]
        self._count_lookups(len(items), len(missing))
        fresh: dict[str, dict[str, Any]] = {}
        compute_s = 0.0
        if missing:
            fresh, compute_s = self._compute(champ, missing, keys, horizon)
        return keys, hits, fresh, compute_s

    async def _off_loop(self, func: Any, *args: Any) -> Any:
        """Run blocking work (a model call, a Redis or database round trip) in a worker thread, at most
        ``THREADS`` at a time: the concurrency the sync APIs get from BentoML."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(THREADS)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    @bentoml.api(route="/forecast")
    async def forecast(self, items: Items, horizon: Horizon = 13) -> ForecastResponse:
        """Weekly forecasts with 80/95 % intervals for 1..1000 SKUs from their demand history."""
        # Async on purpose: a small request answered from the in-process cache is a few dict look-ups
        # and is answered on the event loop (no thread hop, no GIL hand-off: most of the cost of a cached
        # answer when it ran as a sync API). Everything else (a miss, a challenger loaded, whose routing
        # reads the posteriors, a Redis cache, a big request) takes the same path in a worker thread.
        champ = self.models.champion  # one reference for the whole request: a reload cannot split it
        if champ is None:
            return _unavailable(self.models)  # type: ignore[return-value]
        if len(items) <= ON_LOOP_MAX_ITEMS and self.cache.backend == "memory" and not self.bandit.routing_reads_store():
            keys = self._cache_keys(champ, items, horizon)
            hits = self.cache.get_many(list(keys.values()))
            if len(hits) == len(items):
                self._count_lookups(len(items), 0)
                return self._answer(champ, "champion", items, keys, hits, {}, 0.0, horizon)
        return await self._off_loop(self._forecast, champ, items, horizon)

    def _forecast(self, champ: Any, items: list[SeriesIn], horizon: int) -> ForecastResponse:
        """``/forecast`` in a worker thread: routing, cache, the model for the misses, the answer."""
        routed, alias = self.bandit.route()  # champion or challenger, by Thompson sampling (per request)
        champ = routed or champ
        try:
            keys, hits, fresh, compute_s = self._forecast_values(champ, items, horizon)
        except HistoryError as exc:
            return _history_error(exc)  # type: ignore[return-value]
        return self._answer(champ, alias, items, keys, hits, fresh, compute_s, horizon)

    def _answer(
        self,
        champ: Any,
        alias: str,
        items: list[SeriesIn],
        keys: dict[str, str],
        hits: dict[str, Any],
        fresh: dict[str, dict[str, Any]],
        compute_s: float,
        horizon: int,
    ) -> ForecastResponse:
        """The ``/forecast`` answer from the cached and computed values; records what was served."""
        out = []
        for item in items:
            key = keys[item.sku]
            value = hits.get(key) or fresh.get(item.sku)
            if value is None:  # the router returned nothing for this SKU (should not happen)
                return JSONResponse(  # type: ignore[return-value]
                    error_body(f"the model returned no forecast for sku {item.sku!r}"), status_code=500
                )
            out.append(
                SkuForecast(
                    sku=item.sku,
                    forecast_id=str(uuid.uuid4()),
                    model_version=champ.version,
                    cached=key in hits,
                    **value,
                )
            )
        # at INFO only when the model ran: an all-cached answer is the hot path (one line per request)
        log.log(
            logging.INFO if fresh else logging.DEBUG,
            "served %d forecast(s) with v%s: %d from the cache, %d computed in %.3f s",
            len(out),
            champ.version,
            len(hits),
            len(fresh),
            compute_s,
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("forecast ids: %s", [(o.sku, o.forecast_id) for o in out])
        record_served(self.outcomes, champ, alias, items, out, horizon)  # queued: no database round trip here
        return ForecastResponse(model_name=champ.name, model_version=champ.version, horizon=horizon, items=out)

    @bentoml.api(route="/classify")
    def classify(self, items: Items) -> ClassifyResponse:
        """Demand pattern (Syntetos-Boylan), ADI, CV², CV and XYZ of each series; no ABC (see note)."""
        champ = self.models.champion
        router = champ.router if champ is not None else None
        if router is not None:
            rule, season, source = router.rule, router.season_length, f"{champ.name} v{champ.version}"
        else:
            s = self.settings
            rule = PatternRule(s.adi_cutoff, s.cv2_cutoff, tuple(s.xyz_cutoffs))
            season, source = s.season_length, "settings"
        try:
            hist = regularise(_frame(items))
        except HistoryError as exc:
            return _history_error(exc)  # type: ignore[return-value]
        feats = router_features(hist, season, rule)
        patterns = rule.patterns(feats)
        weeks = hist.groupby("unique_id").size()
        out = [
            SkuClass(
                sku=item.sku,
                pattern=patterns[item.sku],
                adi=_num(feats.at[item.sku, "adi"]),
                cv2=_num(feats.at[item.sku, "cv2"]),
                cv=_num(feats.at[item.sku, "cv"]),
                xyz=XYZ[float(feats.at[item.sku, "xyz"])],
                weeks=int(weeks[item.sku]),
            )
            for item in items
        ]
        rule_d = {"adi_cutoff": rule.adi_cutoff, "cv2_cutoff": rule.cv2_cutoff, "xyz_cutoffs": list(rule.xyz_cutoffs)}
        return ClassifyResponse(rule=rule_d, rule_source=source, note=ABC_NOTE, items=out)

    @bentoml.api(route="/model_info")
    def model_info(self) -> dict[str, Any]:
        """What is loaded, per alias, and the state of the registry watch."""
        return {
            "model": self.models.name,
            "ready": self.models.champion is not None,
            "aliases": {a: (m.info() if (m := self.models.get(a)) else None) for a in ("champion", "challenger")},
            "poll_s": self.models.poll_s,
            "last_check": self.models.last_check,
            "last_error": self.models.last_error,
            "reloads": self.models.reloads,
            "cache": self.cache.backend,
        }

    @bentoml.api(route="/admin/reload")
    async def admin_reload(self, force: bool = False) -> dict[str, Any]:
        """Check the registry now; load and swap in the aliases that moved (admin key)."""
        report = await anyio.to_thread.run_sync(self.models.refresh, force)
        body = {"model": self.models.name, "aliases": report, "versions": self.models.versions()}
        if self.models.champion is None:
            return JSONResponse(  # type: ignore[return-value]
                {**error_body("no champion model is loaded", registry_error=self.models.last_error), **body},
                status_code=503,
            )
        if self.models.last_error:
            body["error"] = self.models.last_error
        return body

    # ------------------------------------------------------------ feedback, champion/challenger bandit

    @bentoml.api(route="/feedback")
    def feedback(self, items: FeedbackItems) -> dict[str, Any]:
        """Actuals for served forecasts: reward per forecast, Beta posteriors per version, bandit decision."""
        scored = self.outcomes.score(self.models.name, feedback_items(items))
        done, errors = scored_json(scored)
        decision = self.bandit.evaluate() if done else None
        state = self.bandit.state()
        body = {"items": done, "errors": errors, "decision": decision, "bandit": state}
        if not done:
            return JSONResponse(  # type: ignore[return-value]
                {**error_body("no known forecast_id in the request", field="items"), **body}, status_code=404
            )
        return body

    @bentoml.api(route="/bandit")
    def bandit_state(self) -> dict[str, Any]:
        """Posteriors per version, P(challenger better), traffic shares and the decisions taken."""
        return self.bandit.state()

    # ------------------------------------------------------------ orders, batch jobs (operations)

    @bentoml.api(route="/recommend_order")
    def recommend_order(self, items: list[OrderItem]) -> RecommendOrderResponse:
        """Order quantity per SKU from the champion's forecast and a base-stock (order-up-to) policy."""
        champ = self.models.champion
        if champ is None:
            return _unavailable(self.models)  # type: ignore[return-value]
        horizon = max(i.lead_time_weeks + i.review_period_weeks for i in items)  # one forecast call, one cache key
        try:
            keys, hits, fresh, _ = self._forecast_values(champ, items, horizon)
        except HistoryError as exc:
            return _history_error(exc)  # type: ignore[return-value]
        out = []
        for item in items:
            value = hits.get(keys[item.sku]) or fresh.get(item.sku)
            if value is None:
                return JSONResponse(  # type: ignore[return-value]
                    error_body(f"the model returned no forecast for sku {item.sku!r}"), status_code=500
                )
            order = OrderInput(
                on_hand=item.on_hand,
                on_order=item.on_order,
                lead_time_weeks=item.lead_time_weeks,
                review_period_weeks=item.review_period_weeks,
                service_level=item.service_level,
                unit_cost=item.unit_cost,
                holding_cost_rate=item.holding_cost_rate,
                min_order_qty=item.min_order_qty,
            )
            rec = recommend(value["forecasts"], order)
            out.append(
                OrderRecommendationOut(
                    sku=item.sku,
                    service_level=item.service_level,
                    model_version=champ.version,
                    method=value["method"],
                    pattern=value["pattern"],
                    **rec.as_dict(),
                )
            )
        return RecommendOrderResponse(
            model_name=champ.name, model_version=champ.version, policy=POLICY, formula=ORDER_FORMULA, items=out
        )

    def _batch_champion(self) -> tuple[str, str, Any] | None:
        champ = self.models.champion
        if champ is None:
            return None
        return champ.name, champ.version, champ.predict

    @bentoml.api(route="/batch")
    def batch_submit(self, file: Path, horizon: int = 13) -> dict[str, Any]:
        """Upload a CSV (multipart field ``file``; columns sku, ds, y) for a background forecast job."""
        try:
            frame = parse_batch_csv(Path(file).read_bytes(), self.batch_limits)
        except CsvError as exc:
            return JSONResponse(error_body(str(exc), field="file"), status_code=422)  # type: ignore[return-value]
        job = self.jobs.create(frame, horizon)
        self.batch.submit(job)
        log.info("batch job %s queued: %d SKUs, %d rows, horizon %d", job.job_id, job.skus_total, job.rows, horizon)
        return job.public()

    @bentoml.api(route="/batch_status")
    def batch_status(self, job_id: JobId) -> dict[str, Any]:
        """State (queued, running, done, failed) and progress (SKUs done / total) of a batch job."""
        job = self.jobs.load(job_id)
        if job is None:
            return JSONResponse(error_body(f"no batch job {job_id}", field="job_id"), status_code=404)  # type: ignore[return-value]
        return job.public()

    @bentoml.api(route="/batch_result")
    def batch_result(self, job_id: JobId, format: str = "csv") -> Any:
        """The forecasts of a finished job as csv, json or xlsx (409 while it is not done)."""
        job = self.jobs.load(job_id)
        if job is None:
            return JSONResponse(error_body(f"no batch job {job_id}", field="job_id"), status_code=404)
        if job.state != "done":
            return JSONResponse(
                error_body(f"batch job {job_id} is {job.state}, not done", state=job.state, progress=job.progress),
                status_code=409,
            )
        try:
            content, media = render_batch(job, self.jobs.result_path(job_id), format)
        except FormatUnavailable as exc:
            return JSONResponse(error_body(str(exc), field="format"), status_code=422)
        name = f"forecasts-{job_id}.{format}"
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


StockForecaster.add_asgi_middleware(ApiKeyMiddleware)
SCHEMAS = {
    "/forecast": ForecastRequest,
    "/classify": ClassifyRequest,
    "/model_info": EmptyRequest,
    "/admin/reload": ReloadRequest,
    "/feedback": FeedbackRequest,
    "/bandit": EmptyRequest,
    "/recommend_order": RecommendOrderRequest,
    "/batch_status": BatchStatusRequest,
    "/batch_result": BatchResultRequest,
}
StockForecaster.add_asgi_middleware(RequestValidationMiddleware, schemas=SCHEMAS)
# the APIs take the model the middleware validated: one parse per request
REUSED_BODIES = reuse_validated_bodies(StockForecaster, SCHEMAS)
StockForecaster.add_asgi_middleware(UploadMiddleware, paths=("/batch",))  # multipart: not in the schemas above
