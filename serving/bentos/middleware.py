"""ASGI middlewares added to the BentoML service: API-key auth and rate limiting, then the
request-size limit and schema validation (422 with the field).

Order (outermost first, as added with ``StockForecaster.add_asgi_middleware``):

1. :class:`ApiKeyMiddleware`: 401 without or with an unknown bearer key, 403 for a ``user``
   key on ``/admin/*``, 429 (with ``Retry-After``) when the key's rate limit is spent (per worker,
   or shared by all workers through Redis when ``STOCKML_REDIS_URL`` is set: see
   :mod:`serving.bentos.auth`).
   Health, readiness, metrics and the API docs stay open. With OIDC configured, a bearer that
   is not a known API key and looks like a JWT is verified (:mod:`serving.bentos.oidc`): 401
   with a short reason when invalid, 403 without a stockml role; rate limits per ``sub``.
2. :class:`RequestValidationMiddleware`: 413 when the body is larger than the limit
   (``Content-Length`` or the bytes actually received), 415 for a non-JSON content type, 422
   when the body does not match the endpoint's pydantic model; otherwise the body is replayed
   to BentoML unchanged. BentoML would answer 400 to a pydantic failure; validating here
   gives 422 and a body that names the field, with no traceback. The validated model is left
   in the request's ``state``; :func:`reuse_validated_bodies` makes the BentoML APIs take their
   arguments from it instead of parsing and validating the same body a second time (on a cached
   ``/forecast`` that second validation was as expensive as the rest of the handler).

BentoML's own metrics middleware sits outside these, so 401/403/413/422/429 answers are
counted in ``bentoml_service_request_total`` under their status code.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse

from serving.bentos.auth import KeyStore, RateLimiter, RedisRateLimiter, make_rate_limiter
from serving.bentos.config import ServingConfig
from serving.bentos.oidc import OidcSettings, OidcVerifier, TokenRejected, looks_like_jwt
from serving.bentos.schemas import error_body, validation_body

log = logging.getLogger("stockml.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VALIDATED = "stockml.validated_body"  # request state key: the body's model, validated by the middleware

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/", "/assets/")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _respond(scope: Scope, receive: Receive, send: Send, status: int, body: dict, **headers: str) -> None:
    await JSONResponse(body, status_code=status, headers=headers or None)(scope, receive, send)


async def drain_body(receive: Receive, limit: int) -> None:
    """Read and drop up to ``limit`` more bytes, so the client gets its 413 (or 422) instead of a reset."""
    seen = 0
    while seen <= limit:
        msg = await receive()
        if msg["type"] != "http.request":
            return
        seen += len(msg.get("body", b""))
        if not msg.get("more_body", False):
            return


class BodyTooLarge(Exception):
    """The request body passed its limit (the rest of it, up to a bound, has been read and dropped)."""


async def read_body(receive: Receive, limit: int, drain_limit: int) -> bytes | None:
    """The whole request body, or None if the client disconnected.

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes came, after draining up to
    ``drain_limit`` more (so the client reads the answer instead of a reset).
    """
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        more = bool(msg.get("more_body", False))
        if size > limit:
            if more:
                await drain_body(receive, drain_limit)
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that answers the already read ``body`` once, then defers to ``receive`` (disconnects)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ApiKeyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore | None = None,
        rate_limit_per_s: float | None = None,
        disabled: bool | None = None,
        oidc: OidcVerifier | bool | None = True,
        redis_url: str | bool | None = True,
    ) -> None:
        """Unset arguments come from the environment (:class:`~serving.bentos.config.ServingConfig`).

        ``oidc``: a verifier, ``True`` (from ``STOCKML_OIDC_*``, off when unset) or ``False``/None (off).
        ``redis_url``: where the rate limits are shared between workers; ``True``: ``STOCKML_REDIS_URL``
        (per-worker limits when unset), ``None``/``False``: per worker.
        """
        cfg = ServingConfig.from_env()
        self.app = app
        self.keys = keys if keys is not None else KeyStore.from_env()
        if oidc is True:
            oidc = oidc_from_config(cfg)
        self.oidc: OidcVerifier | None = oidc or None
        rate = cfg.rate_limit_per_s if rate_limit_per_s is None else rate_limit_per_s
        url = cfg.redis_url if redis_url is True else (redis_url or None)
        self.limiter: RateLimiter | RedisRateLimiter = make_rate_limiter(rate, url)
        self.disabled = cfg.auth_disabled if disabled is None else disabled
        if not self.disabled:
            log.info("rate limits: %s", "shared through Redis" if self.limiter.backend == "redis" else "per worker")
        if self.disabled:
            log.warning("STOCKML_AUTH_DISABLED is set: every endpoint is open, without rate limits")
        elif self.oidc is not None:
            log.info("OIDC bearer tokens accepted from issuer %s", self.oidc.settings.issuer)
        elif not len(self.keys):
            log.warning("no API keys configured (STOCKML_API_KEYS / STOCKML_API_KEYS_FILE): every API call gets 401")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.disabled or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth = _header(scope, b"authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="stockml"'}
        if scheme.lower() != "bearer" or not token:
            await _respond(
                scope, receive, send, 401, error_body("missing bearer token (Authorization: Bearer <key>)"), **challenge
            )
            return
        key = self.keys.lookup(token)
        if key is None and self.oidc is not None and looks_like_jwt(token):
            try:
                if self.oidc.fetches_over_network:  # a JWKS fetch may block: keep it off the event loop
                    key = await asyncio.to_thread(self.oidc.verify, token)
                else:
                    key = self.oidc.verify(token)
            except TokenRejected as rej:
                extra = challenge if rej.status == 401 else {}
                await _respond(scope, receive, send, rej.status, error_body(rej.reason), **extra)
                return
        if key is None:
            await _respond(scope, receive, send, 401, error_body("invalid API key"), **challenge)
            return
        if is_admin_path(scope["path"]) and not key.is_admin:
            await _respond(scope, receive, send, 403, error_body("this endpoint needs an admin key"))
            return
        wait = await self.limiter.acheck(key)
        if wait > 0:
            await _respond(
                scope,
                receive,
                send,
                429,
                error_body("rate limit exceeded", retry_after_s=round(wait, 3)),
                **{"Retry-After": str(max(1, math.ceil(wait)))},
            )
            return
        scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)


def oidc_from_config(cfg: ServingConfig) -> OidcVerifier | None:
    """The verifier for the ``STOCKML_OIDC_*`` settings; None when none is set (a partial set raises)."""
    if not cfg.oidc_enabled:
        return None
    return OidcVerifier(
        OidcSettings(
            issuer=cfg.oidc_issuer or "",
            audience=cfg.oidc_audience or "",
            jwks_url=cfg.oidc_jwks_url or "",
            roles_claim=cfg.oidc_roles_claim,
            admin_role=cfg.oidc_admin_role,
            user_role=cfg.oidc_user_role,
        )
    )


class RequestValidationMiddleware:
    """Size limit and schema validation of POST bodies on the paths in ``schemas``."""

    def __init__(self, app: ASGIApp, schemas: dict[str, type[BaseModel]], max_body_bytes: int | None = None) -> None:
        self.app = app
        self.schemas = schemas
        self.max_body_bytes = ServingConfig.from_env().max_body_bytes if max_body_bytes is None else max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        schema = self.schemas.get(scope.get("path", "")) if scope["type"] == "http" else None
        if schema is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        too_large = error_body(f"request body larger than {limit} bytes", max_body_bytes=limit)
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            await drain_body(receive, 2 * limit)
            await _respond(scope, receive, send, 413, too_large)
            return
        ctype = (_header(scope, b"content-type") or "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            await drain_body(receive, 2 * limit)
            await _respond(scope, receive, send, 415, error_body(f"content type {ctype!r}: send application/json"))
            return
        try:
            body = await read_body(receive, limit, drain_limit=limit)
        except BodyTooLarge:
            await _respond(scope, receive, send, 413, too_large)
            return
        if body is None:  # the client went away
            return
        try:
            model = schema.model_validate_json(body or b"{}")
        except ValidationError as exc:
            await _respond(scope, receive, send, 422, validation_body(exc))
            return
        scope.setdefault("state", {})[VALIDATED] = model  # taken by the API's input spec (reuse_validated_bodies)
        await self.app(scope, replay_body(body, receive), send)


def reuse_validated_bodies(service: Any, schemas: dict[str, type[BaseModel]]) -> list[str]:
    """Let the JSON APIs of ``service`` take their arguments from the model that
    :class:`RequestValidationMiddleware` already validated (request state ``VALIDATED``), instead of
    BentoML reading the body again and validating it against its own input model.

    Only for an API whose route has a schema, whose input is keyword fields (not a root or multipart
    input) that the schema has too: the schema's types are the API's (or stricter), so the values
    are what BentoML's own validation would have produced. Without the state entry (the middleware
    not installed, another route) BentoML parses as usual. The API's input model, hence ``/docs.json``,
    is unchanged: only its ``from_http_request`` is wrapped. Returns the API names done.
    """
    done = []
    for name, method in service.apis.items():
        schema = schemas.get(method.route)
        spec = method.input_spec
        if schema is None or getattr(spec, "__root_input__", False) or getattr(spec, "multipart_fields", None):
            continue
        fields = tuple(spec.model_fields)
        if not set(fields) <= set(schema.model_fields):
            continue
        original = spec.from_http_request

        async def from_http_request(cls, request, serde, _schema=schema, _fields=fields, _original=original):
            state = request.scope.get("state")
            pre = state.pop(VALIDATED, None) if state else None
            if isinstance(pre, _schema):
                return cls.model_construct(**{f: getattr(pre, f) for f in _fields})
            return await _original(request, serde)

        spec.from_http_request = classmethod(from_http_request)
        done.append(name)
    return done
