"""The HTTP API: a FastAPI app over the :class:`~serving.bentos.engine.Engine`, mounted on the BentoML
service with ``@bentoml.asgi_app`` (:mod:`serving.bentos.service`).

Each route takes its request model as a FastAPI body parameter, so the OpenAPI that FastAPI writes,
and BentoML merges into ``/docs.json``, is the model itself: lengths, ranges, patterns, required and
forbidden fields. :class:`JsonModelRoute` validates the raw body against that model **once**, in
pydantic's JSON mode (the models' ``strict`` fields accept JSON's own types: a date is an ISO string,
a number is not a string), and an invalid body gets **422** naming each field
(:func:`~serving.bentos.errors.validation_body`). Every operation declares every status it can
answer, with the real body (:class:`~serving.bentos.errors.ErrorBody`): 401/403/429 come from the
auth middleware, 413/415 from the body limits (:mod:`serving.bentos.middleware`), 404/409/422/500/503
from the engine's typed errors.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Body, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.bentos.batch import XLSX_MEDIA_TYPE
from serving.bentos.callbacks import FIELDS as CALLBACK_FIELDS
from serving.bentos.callbacks import CallbackRules
from serving.bentos.engine import Engine
from serving.bentos.errors import ErrorBody, NotReady, ServingError, error_body, validation_body
from serving.bentos.schemas import (
    MAX_HORIZON,
    ClassifyRequest,
    ClassifyResponse,
    EmptyRequest,
    ForecastRequest,
    ForecastResponse,
    ReloadRequest,
)
from serving.bentos.schemas_ops import (
    BanditState,
    BatchResultRequest,
    BatchStatusRequest,
    FeedbackAnswer,
    FeedbackBody,
    JobOut,
    ModelInfo,
    RecommendOrderRequest,
    RecommendOrderResponse,
    ReloadAnswer,
)

THREADS = 4  # blocking work (a model call, a Redis or database round trip) runs in at most this many threads

_WHY = {
    401: "No bearer token, or an unknown or invalid one (`WWW-Authenticate: Bearer`).",
    403: "The key's role may not call this endpoint (admin only), or the OIDC token has no stockml role.",
    404: "An id in the request is not known (`detail` names the field).",
    409: "The batch job is not done yet (`state`, `progress`).",
    413: "The body is larger than the limit (`max_body_bytes`).",
    415: "The content type is not application/json.",
    422: "The body does not match the schema, or cannot be used (`detail`: each field and why).",
    429: "The key's rate limit is spent (`Retry-After`, `retry_after_s`).",
    500: "An internal error (the model answered without a forecast for a SKU, or an unexpected failure): "
    "`error` names its kind, never a traceback.",
    503: "The service is starting, or no champion model is loaded yet (`Retry-After`; `registry_error`).",
}


UNKNOWN_SKU = (
    "An item without a history names a SKU the published weekly demand does not have: `sku` names it, "
    "`detail` the item (`items[i].sku`)."
)


def _errors(*codes: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """The declared error answers of an operation; ``why``: descriptions that differ (``e415=...``)."""
    return {code: {"model": ErrorBody, "description": why.get(f"e{code}", _WHY[code])} for code in codes}


# every route: auth (403: an OIDC token without a stockml role), rate limit, an internal error, not started yet
ANY_ROUTE = (401, 403, 429, 500, 503)
JSON_ERRORS = (*ANY_ROUTE, 413, 415, 422)  # every JSON POST: the above, the body limits, validation


def _body_model(endpoint: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model of the endpoint's JSON body parameter, if it has one (a form model is not one)."""
    for name, hint in typing.get_type_hints(endpoint, include_extras=True).items():
        if typing.get_origin(hint) is Annotated:
            if any(isinstance(m, params.Form) for m in hint.__metadata__):
                continue
            hint = typing.get_args(hint)[0]
        if name != "return" and isinstance(hint, type) and issubclass(hint, BaseModel):
            return hint
    return None


class _ValidatedRequest(Request):
    """A request whose JSON body has already been validated: ``json()`` hands FastAPI the model instance,
    which it accepts as is (pydantic does not revalidate instances)."""

    validated: BaseModel

    async def json(self) -> Any:
        return self.validated


class JsonModelRoute(APIRoute):
    """Validate the JSON body once against the endpoint's model in pydantic's JSON mode (strict types as
    JSON has them); 422 with :func:`validation_body` when it fails. An empty body counts as ``{}``."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        model = _body_model(self.endpoint)
        if model is None:
            return handler

        async def validate_then_handle(request: Request) -> Response:
            req = _ValidatedRequest(request.scope, request.receive)
            try:
                req.validated = model.model_validate_json((await req.body()) or b"{}")
            except ValidationError as exc:
                return JSONResponse(validation_body(exc), status_code=422)
            return await handler(req)

        return validate_then_handle


# The /batch form as published. The form is read by the route itself (checked before that by
# :class:`~serving.bentos.middleware.UploadMiddleware`): ``file`` is one part, sent as a file or as a plain
# field, whose bytes are the CSV, so its schema gives it no JSON type (whatever a client meant a part to be,
# it arrives as bytes) and only says it is one value, not several; the CSV's content is not a schema matter.
# ``callback_url`` and ``notify_email`` are listed only when this service can honour them (an allow-list, an
# SMTP server: :class:`~serving.bentos.callbacks.CallbackRules`), the URL with a pattern of the allowed hosts.
def batch_form(rules: CallbackRules | None = None) -> dict[str, Any]:
    """The /batch form's schema for a service with these notification rules."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["file"],
        "properties": {
            "file": {
                "not": {"type": "array"},
                "format": "binary",
                "description": "CSV with columns sku, ds, y (a header first; one part).",
            },
            "horizon": {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON, "default": 13},
            **(rules or CallbackRules()).form_properties(),
        },
    }


BATCH_FORM = batch_form()


def build_app(
    get_engine: Callable[[], Engine | None], threads: int = THREADS, rules: CallbackRules | None = None
) -> FastAPI:
    """The API over the engine that ``get_engine`` returns (None until the service has built it: 503);
    ``rules``: which batch notification fields the service accepts (what its /batch form publishes)."""
    app = FastAPI(
        title="stockml forecaster",
        description="Forecasts, demand classes and order recommendations from the stockml router.",
        docs_url=None,
        redoc_url=None,
        # BentoML merges these routes into /docs.json (Swagger UI at /), labelled OpenAPI 3.0.2 though the
        # schemas are FastAPI's 3.1 ones (null as a type): /openapi.json is the same document labelled 3.1
        openapi_url="/openapi.json",
    )
    api = APIRouter(route_class=JsonModelRoute, strict_content_type=False)
    limiter: list[anyio.CapacityLimiter] = []  # created on the event loop, at first use

    def engine() -> Engine:
        e = get_engine()
        if e is None:
            raise NotReady("the service is starting")
        return e

    async def off_loop(func: Callable[..., Any], *args: Any) -> Any:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(threads))
        return await anyio.to_thread.run_sync(func, *args, limiter=limiter[0])

    @api.post("/forecast", responses=_errors(*JSON_ERRORS, 404, e404=UNKNOWN_SKU))
    async def forecast(body: ForecastRequest) -> ForecastResponse:
        """Weekly forecasts with 80/95 % intervals for 1..1000 SKUs from their demand history, the one sent or
        (an item with ``sku`` alone) the latest published one; ``as_of_week`` and ``history_source`` say which."""
        e = engine()
        # a small request answered from the in-process cache stays on the event loop (no thread hop)
        return e.forecast_cached(body) or await off_loop(e.forecast, body)

    @api.post("/classify", responses=_errors(*JSON_ERRORS))
    async def classify(body: ClassifyRequest) -> ClassifyResponse:
        """Demand pattern (Syntetos-Boylan), ADI, CV², CV and XYZ of each series; no ABC (see note)."""
        return await off_loop(engine().classify, body)

    @api.post(
        "/recommend_order",
        responses=_errors(
            *JSON_ERRORS,
            404,
            e404=UNKNOWN_SKU + " Also: on_hand or lead_time_weeks left out for a SKU the published tables have "
            "no value for (`detail` names the field to send).",
        ),
    )
    async def recommend_order(body: RecommendOrderRequest) -> RecommendOrderResponse:
        """Order quantity per SKU from the champion's forecast and a base-stock (order-up-to) policy. What an
        item leaves out (history, on_hand, lead_time_weeks, min_order_qty, unit_cost) comes from the latest
        published tables; ``inputs`` says where each value came from (``on_order``: 0 unless sent)."""
        return await off_loop(engine().recommend_order, body)

    @api.post("/model_info", response_model=ModelInfo, responses=_errors(*JSON_ERRORS))
    async def model_info(body: Annotated[EmptyRequest, Body(default_factory=EmptyRequest)]) -> dict[str, Any]:
        """What is loaded, per alias, and the state of the registry watch (the body may be empty)."""
        return engine().model_info()

    @api.post("/admin/reload", response_model=ReloadAnswer, responses=_errors(*JSON_ERRORS))
    async def admin_reload(body: Annotated[ReloadRequest, Body(default_factory=ReloadRequest)]) -> dict[str, Any]:
        """Check the registry now; load and swap in the aliases that moved (admin key)."""
        return await off_loop(engine().reload, body.force)

    @api.post("/feedback", response_model=FeedbackAnswer, responses=_errors(*JSON_ERRORS, 404))
    async def feedback(body: FeedbackBody) -> dict[str, Any]:
        """Actuals for served forecasts: reward per forecast, Beta posteriors per version, bandit decision."""
        return await off_loop(engine().feedback, body.request())

    @api.post("/bandit", response_model=BanditState, responses=_errors(*JSON_ERRORS))
    async def bandit(body: Annotated[EmptyRequest, Body(default_factory=EmptyRequest)]) -> dict[str, Any]:
        """Posteriors per version, P(challenger better), traffic shares and the decisions taken."""
        return await off_loop(engine().bandit_state)

    @api.post(
        "/batch",
        responses=_errors(
            *ANY_ROUTE,
            415,
            422,
            e415="The content type is not multipart/form-data.",
            e422="No single `file` part, an unknown form field, a bad `horizon`, an upload over the limit, a "
            "`callback_url` whose host is not on the service's allow-list or a `notify_email` the service cannot send "
            "(`detail` names the field).",
        ),
        openapi_extra={
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": batch_form(rules)}}}
        },
    )
    async def batch(request: Request) -> JobOut:
        """Upload a CSV (multipart field ``file``) for a background forecast job. A CSV whose content cannot
        be used gives a job that is ``failed`` from the start, its ``error`` saying why. Where the service
        allows it, ``callback_url`` is POSTed a signed JSON body and ``notify_email`` is e-mailed when the
        job ends (``notifications`` in ``/batch_status`` says how that went)."""
        async with request.form() as form:
            part, horizon = form.getlist("file")[0], form.get("horizon")
            raw = await part.read() if isinstance(part, UploadFile) else str(part).encode()
            callback_url, notify_email = (v if isinstance(v := form.get(f), str) else None for f in CALLBACK_FIELDS)
        h = int(horizon) if isinstance(horizon, str) else 13
        return await off_loop(engine().batch_submit, raw, h, callback_url, notify_email)

    @api.post("/batch_status", responses=_errors(*JSON_ERRORS, 404))
    async def batch_status(body: BatchStatusRequest) -> JobOut:
        """State (queued, running, done, failed) and progress (SKUs done / total) of a batch job."""
        return await off_loop(engine().batch_status, body.job_id)

    file_types = {"text/csv": {"schema": {"type": "string"}}, XLSX_MEDIA_TYPE: {"schema": {"type": "string"}}}

    @api.post(
        "/batch_result",
        response_class=Response,
        responses={
            200: {"description": "The forecasts file (csv, json or xlsx).", "content": file_types},
            **_errors(*JSON_ERRORS, 404, 409),
        },
    )
    async def batch_result(body: BatchResultRequest) -> Response:
        """The forecasts of a finished job as csv, json or xlsx (409 while it is not done)."""
        content, media, name = await off_loop(engine().batch_result, body.job_id, body.format)
        return Response(content, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    app.include_router(api)

    @app.get(
        "/readyz",
        response_class=PlainTextResponse,
        tags=["Infrastructure"],
        responses={
            503: {
                "description": "Not ready: no champion model is loaded yet.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
            }
        },
    )
    async def readyz() -> PlainTextResponse:
        """Readiness: 200 once a champion is loaded, 503 until then. BentoML's own ``/readyz`` answers it (its
        route comes first, asking ``__is_ready__``: the same question); this route puts the 503 in the API docs."""
        e = get_engine()
        if e is None or not e.ready:
            raise NotReady()
        return PlainTextResponse("\n")

    @app.exception_handler(ServingError)
    async def serving_error(_request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:  # form fields of /batch
        return JSONResponse(validation_body(list(exc.errors())), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:  # logged by the server, not shown
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    return app


JSON_PATHS = frozenset(
    {
        "/forecast",
        "/classify",
        "/recommend_order",
        "/model_info",
        "/admin/reload",
        "/feedback",
        "/bandit",
        "/batch_status",
        "/batch_result",
    }
)  # the JSON routes above: the body limits (413/415) apply to these; /batch is multipart
