"""The serving engine: everything the service computes, without HTTP.

:class:`Engine` holds the model watcher, the forecast cache, the outcome store, the bandit and the
batch jobs, and answers forecast, classify, recommend_order, feedback, model info, reload and batch
requests with plain pydantic models in and out. A request it cannot answer raises a typed
:class:`~serving.bentos.errors.ServingError` (503 no champion, 422 unusable input, 404 unknown id,
409 job not done, 500 model failure) that the HTTP layer (:mod:`serving.bentos.http`) turns into a
status code and the common error body. Tests drive it directly (``tests/unit/serving/test_serving_engine.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import bentoml

from serving.bentos.agent import AgentLookup, ServedAgent, choose_policy
from serving.bentos.batch import BatchLimits, JobStore
from serving.bentos.batch_jobs import BatchJobs
from serving.bentos.by_sku import Provenance, StockLookup, needs_published, resolve_order_input, resolve_series
from serving.bentos.cache import Cache, cache_key, history_hash, make_cache
from serving.bentos.errors import InvalidInput, ModelFailure, NotFound, NotReady
from serving.bentos.forecasts import ORDER_FORMULA, frame, json_num, per_sku, rule_of
from serving.bentos.models import ModelWatcher
from serving.bentos.orders import POLICY, recommend
from serving.bentos.outcomes import OutcomeStore
from serving.bentos.related import RelatedLookup
from serving.bentos.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ForecastRequest,
    ForecastResponse,
    RelatedProduct,
    SeriesIn,
    SkuClass,
    SkuForecast,
)
from serving.bentos.schemas_ops import JobOut, OrderRecommendationOut, RecommendOrderRequest, RecommendOrderResponse
from serving.bentos.traffic import Bandit, BanditConfig, FeedbackRequest, feedback_items, record_served, scored_json
from stockml.settings import Settings
from training.classification.classes import demand_patterns, xyz_classes
from training.data.published import PublishedStock
from training.registry.mlflow_registry import MODEL_NAME
from training.router.predict import HistoryError, regularise
from training.router.train import router_features

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
ABC_NOTE = (
    "pattern, ADI, CV² and XYZ come from each series alone; ABC needs the whole catalogue's value "
    "ranking, so it is only available from the batch classification."
)
ON_LOOP_MAX_ITEMS = 32  # /forecast answers up to this many all-cached SKUs without leaving the event loop


def _history_error(exc: HistoryError) -> InvalidInput:
    return InvalidInput(f"history cannot be used: {exc}", field="items")


class Engine:
    """Forecasts, classes, orders, feedback and batch jobs for one served model name.

    Construct with :meth:`from_settings` (what the service does) or with the parts (tests); call
    :meth:`start` to begin following the registry and running batch jobs, :meth:`stop` at shutdown.
    """

    def __init__(
        self,
        settings: Settings,
        models: ModelWatcher,
        cache: Cache,
        outcomes: OutcomeStore,
        bandit: Bandit,
        jobs: JobStore,
        batch_limits: BatchLimits,
        related: RelatedLookup | None = None,
        stock: StockLookup | None = None,
        agent: AgentLookup | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.cache = cache
        self.outcomes = outcomes
        self.bandit = bandit
        self.jobs = jobs
        self.batch_limits = batch_limits
        self.related = related
        self.stock = stock
        self.agent = agent
        self.batch_jobs = BatchJobs(jobs, self._batch_champion, batch_limits, settings.notify)
        self.batch = self.batch_jobs.runner

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        s = settings.serving
        models = ModelWatcher(s.model_name or MODEL_NAME, s.poll_s)
        outcomes = OutcomeStore.from_settings(settings.home, s)
        bandit = Bandit(outcomes, models, BanditConfig.from_settings(settings.bandit, settings.promotion_tolerance))
        return cls(
            settings,
            models,
            make_cache(s.redis_url, s.cache_size, s.cache_ttl_s, s.redis_retry_s),
            outcomes,
            bandit,
            JobStore(Path(settings.home) / "serving_jobs"),
            BatchLimits.from_settings(settings.batch),
            RelatedLookup.from_settings(settings),
            StockLookup.from_settings(settings),
            AgentLookup.from_settings(settings),
        )

    # ------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        return self.models.champion is not None

    def start(self) -> None:
        self.models.start()
        self.batch_jobs.start()

    def stop(self) -> None:
        self.models.stop()
        self.batch_jobs.stop()
        self.outcomes.close()  # write the queued served-forecast records

    def _champion(self) -> Any:
        champ = self.models.champion  # one reference for the whole request: a reload cannot split it
        if champ is None:
            raise NotReady(registry_error=self.models.last_error, model=self.models.name)
        return champ

    # ------------------------------------------------------------ the forecast path

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

    @staticmethod
    def _count_lookups(n_items: int, n_missing: int) -> None:
        CACHE_LOOKUPS.labels(result="hit").inc(n_items - n_missing)
        CACHE_LOOKUPS.labels(result="miss").inc(n_missing)

    def _forecast_values(
        self, champ: Any, items: list[SeriesIn], horizon: int
    ) -> tuple[dict[str, str], dict[str, Any], dict[str, dict[str, Any]], float]:
        """The path shared by forecast and recommend_order: per SKU the cache key, the cached values found,
        the values computed for the others (then cached), and the compute time."""
        keys = self._cache_keys(champ, items, horizon)
        hits = self.cache.get_many(list(keys.values()))
        missing = [item for item in items if keys[item.sku] not in hits]
        self._count_lookups(len(items), len(missing))
        fresh: dict[str, dict[str, Any]] = {}
        compute_s = 0.0
        if missing:
            t0 = time.perf_counter()
            try:
                fresh = per_sku(champ.predict(frame(missing), horizon))
            except HistoryError as exc:
                raise _history_error(exc) from exc
            SKUS_FORECAST.labels(model_version=champ.version).inc(len(missing))
            self.cache.set_many({keys[sku]: value for sku, value in fresh.items()})
            compute_s = time.perf_counter() - t0
        return keys, hits, fresh, compute_s

    @staticmethod
    def _value(sku: str, key: str, hits: dict[str, Any], fresh: dict[str, dict[str, Any]]) -> dict[str, Any]:
        value = hits.get(key) or fresh.get(sku)
        if value is None:  # the router returned nothing for this SKU (should not happen)
            raise ModelFailure(f"the model returned no forecast for sku {sku!r}")
        return value

    def forecast_cached(self, req: ForecastRequest) -> ForecastResponse | None:
        """The answer when it is a few in-process look-ups (small request, every SKU in the in-process
        cache, no challenger whose routing reads the store), else None: then call :meth:`forecast`
        (off the event loop). Raises :class:`NotReady` without a champion."""
        champ = self._champion()
        items = req.items
        if len(items) > ON_LOOP_MAX_ITEMS or self.cache.backend != "memory" or self.bandit.routing_reads_store():
            return None
        if needs_published(items):  # by SKU: the published tables may need a database read
            return None
        series, provenance = resolve_series(items, PublishedStock())
        keys = self._cache_keys(champ, series, req.horizon)
        hits = self.cache.get_many(list(keys.values()))
        if len(hits) != len(series):
            return None
        self._count_lookups(len(series), 0)
        return self._answer(champ, "champion", series, provenance, keys, hits, {}, 0.0, req.horizon)

    def forecast(self, req: ForecastRequest) -> ForecastResponse:
        """Weekly forecasts with intervals per SKU, from champion or challenger (Thompson sampling, per
        request); every served SKU forecast is recorded under its forecast_id."""
        champ = self._champion()
        series, provenance = resolve_series(req.items, self.published(req.items))
        routed, alias = self.bandit.route()
        champ = routed or champ
        keys, hits, fresh, compute_s = self._forecast_values(champ, series, req.horizon)
        return self._answer(champ, alias, series, provenance, keys, hits, fresh, compute_s, req.horizon)

    def published(self, items: list[Any]) -> PublishedStock:
        """The published stock tables when some item leaves out what they give (else none: no read)."""
        if self.stock is None or not needs_published(items):
            return PublishedStock()
        return self.stock.get()

    def _answer(
        self,
        champ: Any,
        alias: str,
        items: list[SeriesIn],
        provenance: dict[str, Provenance],
        keys: dict[str, str],
        hits: dict[str, Any],
        fresh: dict[str, dict[str, Any]],
        compute_s: float,
        horizon: int,
    ) -> ForecastResponse:
        out = [
            SkuForecast(
                sku=item.sku,
                forecast_id=str(uuid.uuid4()),
                model_version=champ.version,
                cached=keys[item.sku] in hits,
                as_of_week=provenance[item.sku].as_of_week,
                history_source=provenance[item.sku].history_source,
                **self._value(item.sku, keys[item.sku], hits, fresh),
            )
            for item in items
        ]
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

    # ------------------------------------------------------------ classify, orders

    def classify(self, req: ClassifyRequest) -> ClassifyResponse:
        """Syntetos-Boylan pattern, ADI, CV², CV and XYZ of each series, with the champion's rule (or the
        settings' without one), through the library's classification rules."""
        champ = self.models.champion
        router = champ.router if champ is not None else None
        rule, season, source = rule_of(router, self.settings)
        if router is not None:
            source = f"{champ.name} v{champ.version}"
        try:
            hist = regularise(frame(req.items), min_weeks=1)  # one week is enough for the classes
        except HistoryError as exc:
            raise _history_error(exc) from exc
        feats = router_features(hist, season, rule)
        patterns = demand_patterns(feats["adi"], feats["cv2"], rule.adi_cutoff, rule.cv2_cutoff)
        xyz = xyz_classes(feats["cv"], tuple(rule.xyz_cutoffs))
        weeks = hist.groupby("unique_id").size()
        related = self.related.get() if self.related is not None else {}
        out = [
            SkuClass(
                sku=item.sku,
                pattern=patterns[item.sku],
                adi=json_num(feats.at[item.sku, "adi"]),
                cv2=json_num(feats.at[item.sku, "cv2"]),
                cv=json_num(feats.at[item.sku, "cv"]),
                xyz=xyz[item.sku],
                weeks=int(weeks[item.sku]),
                related=[RelatedProduct(**r) for r in related.get(item.sku, [])],
            )
            for item in req.items
        ]
        rule_d = {"adi_cutoff": rule.adi_cutoff, "cv2_cutoff": rule.cv2_cutoff, "xyz_cutoffs": list(rule.xyz_cutoffs)}
        return ClassifyResponse(rule=rule_d, rule_source=source, note=ABC_NOTE, items=out)

    def recommend_order(self, req: RecommendOrderRequest) -> RecommendOrderResponse:
        """Base-stock order quantity per SKU from the champion's forecast (same path and cache as forecast).

        The inputs are resolved first, from the request or the published tables
        (:func:`~serving.bentos.by_sku.resolve_order_input`), then the policy runs on them."""
        champ = self._champion()
        stock = self.published(req.items)
        first = {}
        for i, item in enumerate(req.items):
            first.setdefault(item.sku, i)
        series, provenance = resolve_series(req.series(), stock, first)  # one per sku
        orders = [resolve_order_input(item, stock, i) for i, item in enumerate(req.items)]
        horizon = max(o.lead_time_weeks + o.review_period_weeks for o, _ in orders)  # one forecast call, one key
        keys, hits, fresh, _ = self._forecast_values(champ, series, horizon)
        served = self.agent.get() if self.agent is not None else ServedAgent()
        weekly = _weekly_histories(series)
        out = []
        for item, (order, inputs) in zip(req.items, orders, strict=True):
            value = self._value(item.sku, keys[item.sku], hits, fresh)
            rec = recommend(value["forecasts"], order)
            choice = choose_policy(
                item.policy, served, value["pattern"], order, rec.order_up_to, weekly.get(item.sku), self.settings,
                sku=item.sku, forecast=value["forecasts"],
            )  # fmt: skip
            if choice.policy == "rl":
                rec = dataclasses.replace(rec, order_qty=choice.order_qty, policy="rl")
            out.append(
                OrderRecommendationOut(
                    sku=item.sku,
                    policy_reason=choice.reason,
                    expected_cost_per_period=choice.expected_cost_per_period,
                    agent_version=served.version if choice.policy == "rl" else None,
                    service_level=item.service_level,
                    model_version=champ.version,
                    method=value["method"],
                    pattern=value["pattern"],
                    as_of_week=provenance[item.sku].as_of_week,
                    history_source=provenance[item.sku].history_source,
                    inputs=inputs,
                    **rec.as_dict(),
                )
            )
        return RecommendOrderResponse(
            model_name=champ.name,
            model_version=champ.version,
            policy="+".join(sorted({o.policy for o in out})) or POLICY,
            formula=ORDER_FORMULA,
            items=out,
        )

    # ------------------------------------------------------------ models, feedback, bandit

    def model_info(self) -> dict[str, Any]:
        return {
            "model": self.models.name,
            "ready": self.ready,
            "aliases": {a: (m.info() if (m := self.models.get(a)) else None) for a in ("champion", "challenger")},
            "poll_s": self.models.poll_s,
            "last_check": self.models.last_check,
            "last_error": self.models.last_error,
            "reloads": self.models.reloads,
            "cache": self.cache.backend,
            "timesfm": _timesfm_checkpoint(),
        }

    def reload(self, force: bool = False) -> dict[str, Any]:
        """Check the registry now; load and swap in the aliases that moved. :class:`NotReady` (with the
        report) when there is still no champion."""
        report = self.models.refresh(force)
        body: dict[str, Any] = {"model": self.models.name, "aliases": report, "versions": self.models.versions()}
        if not self.ready:
            raise NotReady("no champion model is loaded", registry_error=self.models.last_error, **body)
        if self.models.last_error:
            body["error"] = self.models.last_error
        return body

    def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        """Score actuals against served forecasts; :class:`NotFound` when no forecast_id is known."""
        scored = self.outcomes.score(self.models.name, feedback_items(req.items))
        done, errors = scored_json(scored)
        decision = self.bandit.evaluate() if done else None
        body = {"items": done, "errors": errors, "decision": decision, "bandit": self.bandit.state()}
        if not done:
            raise NotFound("no known forecast_id in the request", field="items", **body)
        return body

    def bandit_state(self) -> dict[str, Any]:
        return self.bandit.state()

    # ------------------------------------------------------------ batch jobs

    def _batch_champion(self) -> tuple[str, str, Any] | None:
        champ = self.models.champion
        return None if champ is None else (champ.name, champ.version, champ.predict)

    def batch_submit(
        self, raw: bytes, horizon: int = 13, callback_url: str | None = None, notify_email: str | None = None
    ) -> JobOut:
        """A job for the uploaded CSV (:meth:`serving.bentos.batch_jobs.BatchJobs.submit`)."""
        return self.batch_jobs.submit(raw, horizon, callback_url, notify_email)

    def batch_status(self, job_id: str) -> JobOut:
        return self.batch_jobs.status(job_id)

    def batch_result(self, job_id: str, fmt: str = "csv") -> tuple[bytes, str, str]:
        """(content, media type, file name) of a finished job's forecasts."""
        return self.batch_jobs.result(job_id, fmt)


def _timesfm_checkpoint() -> dict[str, Any]:
    """Whether the TimesFM checkpoint is on this machine (a model routing to TimesFM needs it to load)."""
    from training.forecasting.foundation import checkpoint_status

    return checkpoint_status().as_dict()


def _weekly_histories(series: list) -> dict[str, list[float]]:
    """{sku: weekly demand on the W-MON grid} of the resolved series (what the order policies learn from)."""
    if not series:
        return {}
    weekly = regularise(frame(series), min_weeks=1)
    return {str(k): g["y"].tolist() for k, g in weekly.groupby("unique_id", sort=False)}
