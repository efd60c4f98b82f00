"""``StockForecaster``: the stockml router from the MLflow registry behind a BentoML 1.4 HTTP service.

Run it from the repository root::

    STOCKML_AUTH__API_KEYS="s3cret:user,adm1n:admin" bentoml serve serving.bentos.service:StockForecaster --port 3000

Endpoints (all POST + JSON, bearer key needed; health, readiness, metrics and docs are open):

- ``/forecast``: ``{"items": [{"sku", "history": [{"ds", "y"}, ...]}, ...], "horizon": 13}`` →
  per SKU the weekly forecasts with 80/95 % intervals, method, weights, confidence, pattern,
  explanation, ``model_version`` and a ``forecast_id`` (for feedback later); ``cached`` says
  whether it came from the cache.
- ``/classify``: the same items → per SKU pattern (smooth/erratic/intermittent/lumpy), ADI, CV²,
  CV and XYZ, from the series alone. ABC is *not* returned: it ranks a SKU's value against the
  whole catalogue, which a request about some series does not carry (the batch pipeline has it).
  Each SKU also gets ``related``: the products bought with it, from ``stock_related`` (read
  through the source connection, see :mod:`serving.bentos.related`).
- ``/model_info``: the versions loaded per alias, when, and the last registry error.
- ``/admin/reload`` (admin key): check the registry now and swap in moved aliases
  (``{"force": true}`` reloads even when the version did not change).
- ``/recommend_order``: items with history plus ``on_hand``, ``lead_time_weeks`` (and optionally
  ``on_order``, ``review_period_weeks``, ``service_level``, costs, ``min_order_qty``) → per SKU the
  base-stock order quantity, order-up-to level, safety stock and expected demand, from the
  champion's forecast (same path and cache as ``/forecast``; policy in :mod:`serving.bentos.orders`).
- ``/batch`` (multipart upload, field ``file``: CSV ``sku,ds,y``; optional ``horizon``, ``callback_url``,
  ``notify_email``: told when the job ends, see :mod:`serving.bentos.callbacks`) → a job id;
  ``/batch_status`` ``{"job_id"}`` → state and progress; ``/batch_result`` ``{"job_id", "format":
  "csv"|"json"|"xlsx"}`` → the forecasts file. Jobs run in a background thread and are kept under
  ``$STOCKML_HOME/serving_jobs/`` (see :mod:`serving.bentos.batch`).
- ``/feedback``: ``{"items": [{"forecast_id", "actuals": [{"ds", "y"}]}]}`` → reward per forecast,
  Beta posteriors per version, and the bandit's decision; ``/bandit``: posteriors, P(challenger
  better), traffic shares, decisions. With a challenger loaded, each ``/forecast`` request is served
  by champion or challenger by Thompson sampling (see :mod:`serving.bentos.traffic`).
- ``GET /healthz``, ``/livez``; ``GET /readyz`` (503 until the champion is loaded); ``GET /metrics``;
  ``GET /docs.json`` (the OpenAPI: the FastAPI app's routes, merged by BentoML; ``GET /openapi.json`` is
  the same routes labelled OpenAPI 3.1) and ``GET /`` (Swagger UI).

Errors: 401/403 (key, role), 404 (unknown path or id), 405 (wrong method, ``Allow``), 409 (job not
done), 413 (body too large), 415 (not JSON), 422 (validation: the body names each failing field),
429 (rate limit), 503 (no champion loaded); every one with the ``ErrorBody`` of ``/docs.json``
(:class:`~serving.bentos.middleware.ErrorShapeMiddleware` reshapes the server's own plain-text
404/405). Never a traceback.

Layers: this module only wires them. :mod:`serving.bentos.http` is the FastAPI app (routes, request
and response models, error mapping), mounted here with ``@bentoml.asgi_app``; the middlewares
(:mod:`serving.bentos.middleware`) are added with BentoML's ``add_asgi_middleware``; everything
computed is in :class:`serving.bentos.engine.Engine`.

Configuration: one :class:`stockml.settings.Settings`, built once when this module is imported by the
server process and passed down as values: ``STOCKML_HOME`` / ``STOCKML_MLFLOW_TRACKING_URI`` (the
registry) and its ``serving``, ``auth``, ``bandit``, ``batch`` and ``notify`` sections
(``STOCKML_SERVING__*``, ``STOCKML_AUTH__*``, ``STOCKML_BANDIT__*``, ``STOCKML_BATCH__*``,
``STOCKML_NOTIFY__*``; README's settings table). Caches and
rate limits are per worker process unless ``STOCKML_SERVING__REDIS_URL`` is set; ``STOCKML_SERVING__WORKERS``
sets the number of worker processes (each answer names its worker in ``X-Stockml-Worker``).
"""

from __future__ import annotations

import logging

import bentoml
import mlflow

from serving.bentos.callbacks import CallbackRules
from serving.bentos.engine import Engine
from serving.bentos.http import JSON_PATHS, THREADS, build_app
from serving.bentos.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ErrorShapeMiddleware,
    UploadMiddleware,
    auth_options,
)
from serving.bentos.models import redact
from serving.bentos.worker import WorkerHeaderMiddleware
from stockml.settings import Settings, get_settings
from stockml.settings_serving import apply_registry_http_policy, renamed_variables

log = logging.getLogger("stockml.serving")

SETTINGS: Settings = get_settings()  # once per server process; everything below gets values from it


def _enable_logging() -> None:
    """BentoML's server logging config disables loggers that existed before it and keeps the root at
    WARNING: switch ours back on at INFO, so model loads, swaps and registry errors reach the server log."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (name == "stockml" or name.startswith("stockml.serving")) and isinstance(logger, logging.Logger):
            logger.disabled = False
    logging.getLogger("stockml.serving").setLevel(logging.INFO)


_engines: list[Engine] = []  # the engine of this process's service instance, once built
app = build_app(lambda: _engines[0] if _engines else None, rules=CallbackRules.from_settings(SETTINGS.notify))


@bentoml.service(name="stockml_forecaster", traffic={"timeout": 120}, threads=THREADS, workers=SETTINGS.serving.workers)
@bentoml.asgi_app(app, path="/")
class StockForecaster:
    """The router from ``models:/stockml-router@champion`` (and ``@challenger``), following alias moves."""

    def __init__(self) -> None:
        _enable_logging()
        self.settings = SETTINGS
        for old, new in renamed_variables().items():
            log.warning("%s is set but no longer read: use %s", old, new)
        uri = self.settings.tracking_uri
        apply_registry_http_policy(self.settings.serving)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.engine = Engine.from_settings(self.settings)
        log.info(
            "StockForecaster: registry %s, model %s, poll %ss, cache %s",
            redact(uri),
            self.engine.models.name,
            self.engine.models.poll_s,
            self.engine.cache.backend,
        )
        _engines[:] = [self.engine]
        self.engine.start()

    def __is_ready__(self) -> bool:
        return self.engine.ready

    @bentoml.on_shutdown
    def stop(self) -> None:
        self.engine.stop()


# outermost first: every error answer in the ErrorBody shape, the worker header, auth and rate limits, then
# the body limits; BentoML's metrics middleware wraps them all
StockForecaster.add_asgi_middleware(ErrorShapeMiddleware)
StockForecaster.add_asgi_middleware(WorkerHeaderMiddleware)
StockForecaster.add_asgi_middleware(
    ApiKeyMiddleware, **auth_options(SETTINGS.auth, SETTINGS.serving.redis_url, SETTINGS.serving.redis_retry_s)
)
StockForecaster.add_asgi_middleware(
    BodyLimitMiddleware, paths=JSON_PATHS, max_body_bytes=SETTINGS.serving.max_body_bytes
)
StockForecaster.add_asgi_middleware(
    UploadMiddleware,
    paths=("/batch",),
    max_bytes=SETTINGS.batch.max_bytes,
    rules=CallbackRules.from_settings(SETTINGS.notify),
)
