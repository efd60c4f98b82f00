"""ASGI middlewares added to the BentoML service with its public ``add_asgi_middleware``: API-key
auth and rate limiting, then the size and content-type limits of request bodies.

Order (outermost first, as added in :mod:`serving.bentos.service`):

0. :class:`ErrorShapeMiddleware`: any 4xx/5xx answer that is not JSON (the server's own 404 for an
   unknown path, 405 for a wrong method) is given the :class:`~serving.bentos.errors.ErrorBody` shape.
1. :class:`ApiKeyMiddleware`: 401 without or with an unknown bearer key, 403 for a ``user``
   key on ``/admin/*``, 429 (with ``Retry-After``) when the key's rate limit is spent (per worker,
   or shared by all workers through Redis when ``STOCKML_SERVING__REDIS_URL`` is set: see
   :mod:`serving.bentos.auth`).
   Health, readiness, metrics and the API docs stay open. With OIDC configured, a bearer that
   is not a known API key and looks like a JWT is verified (:mod:`serving.bentos.oidc`): 401
   with a short reason when invalid, 403 without a stockml role; rate limits per ``sub``.
2. :class:`BodyLimitMiddleware`: on the JSON routes, 413 when the body is larger than the limit
   (``Content-Length`` or the bytes actually received) and 415 for a non-JSON content type,
   before anything parses the body. :class:`UploadMiddleware` does the same for the multipart
   ``/batch`` upload (larger than the limit: 422 naming ``file``; not multipart: 415; a missing
   ``file`` part, an unknown field or a bad ``horizon``: 422 naming it).

Schema validation is not here: the FastAPI app (:mod:`serving.bentos.http`) validates each body
against the same models it publishes in the OpenAPI. All answers carry the
:class:`~serving.bentos.errors.ErrorBody` shape. BentoML's own metrics middleware sits outside
these, so 401/403/413/415/422/429 answers are counted in ``bentoml_service_request_total``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from serving.bentos.auth import KeyStore, RateLimiter, RedisRateLimiter, make_rate_limiter
from serving.bentos.callbacks import FIELDS as CALLBACK_FIELDS
from serving.bentos.callbacks import CallbackRules
from serving.bentos.errors import error_body
from serving.bentos.oidc import OidcSettings, OidcVerifier, TokenRejected, looks_like_jwt
from serving.bentos.schemas import MAX_HORIZON
from stockml.settings_serving import AuthSettings

log = logging.getLogger("stockml.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/metrics", "/", "/docs.json", "/schema.json", "/openapi.json"}
)
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
        rate_limit_per_s: float = 50.0,
        disabled: bool = False,
        oidc: OidcVerifier | None = None,
        redis_url: str | None = None,
        redis_retry_s: float = 30.0,
    ) -> None:
        """``keys``: the accepted API keys (None: none); ``oidc``: a verifier of JWT bearers (None: off);
        ``redis_url``: where the rate limits are shared between workers (None: per worker), with per-worker
        limits for ``redis_retry_s`` after a Redis error. :func:`auth_options` builds these from the settings."""
        self.app = app
        self.keys = keys if keys is not None else KeyStore()
        self.oidc = oidc
        self.limiter: RateLimiter | RedisRateLimiter = make_rate_limiter(rate_limit_per_s, redis_url, redis_retry_s)
        self.disabled = disabled
        if not self.disabled:
            log.info("rate limits: %s", "shared through Redis" if self.limiter.backend == "redis" else "per worker")
        if self.disabled:
            log.warning("STOCKML_AUTH__DISABLED is set: every endpoint is open, without rate limits")
        elif self.oidc is not None:
            log.info("OIDC bearer tokens accepted from issuer %s", self.oidc.settings.issuer)
        elif not len(self.keys):
            log.warning(
                "no API keys configured (STOCKML_AUTH__API_KEYS / STOCKML_AUTH__API_KEYS_FILE): every API call gets 401"
            )

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


def oidc_from_settings(auth: AuthSettings) -> OidcVerifier | None:
    """The verifier for the ``STOCKML_AUTH__OIDC_*`` settings; None when none is set (a partial set raises)."""
    if not auth.oidc_enabled:
        return None
    return OidcVerifier(
        OidcSettings(
            issuer=auth.oidc_issuer or "",
            audience=auth.oidc_audience or "",
            jwks_url=auth.oidc_jwks_url or "",
            roles_claim=auth.oidc_roles_claim,
            admin_role=auth.oidc_admin_role,
            user_role=auth.oidc_user_role,
            jwks_ttl_s=auth.oidc_jwks_ttl_s,
            jwks_min_refresh_s=auth.oidc_jwks_min_refresh_s,
        )
    )


def auth_options(auth: AuthSettings, redis_url: str | None, redis_retry_s: float = 30.0) -> dict[str, Any]:
    """The keyword arguments of :class:`ApiKeyMiddleware` for these settings."""
    return {
        "keys": KeyStore.from_settings(auth),
        "rate_limit_per_s": auth.rate_limit_per_s,
        "disabled": auth.disabled,
        "oidc": oidc_from_settings(auth),
        "redis_url": redis_url,
        "redis_retry_s": redis_retry_s,
    }


class BodyLimitMiddleware:
    """413 for a body over ``max_body_bytes`` and 415 for a non-JSON content type, on POSTs to ``paths``;
    a body within the limits is replayed unchanged to the app (which validates it)."""

    def __init__(self, app: ASGIApp, paths: frozenset[str] | set[str], max_body_bytes: int) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
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
        await self.app(scope, replay_body(body, receive), send)


class UploadMiddleware:
    """Checks a multipart upload to ``paths`` before the app parses it, answering 415/422 with the reason:
    larger than ``max_bytes`` (Content-Length or bytes received) → 422 naming ``file``; not
    ``multipart/form-data`` → 415; no ``file`` part, an unknown field, ``horizon`` not an integer
    1..104, or a ``callback_url`` / ``notify_email`` that ``rules`` refuses → 422 naming the field. A valid
    body is replayed unchanged; the CSV's content is checked by the engine
    (:func:`serving.bentos.batch.parse_csv`)."""

    def __init__(
        self,
        app: ASGIApp,
        paths: tuple[str, ...] = ("/batch",),
        max_bytes: int = 64 * 1024 * 1024,
        rules: CallbackRules | None = None,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_bytes = max_bytes
        self.rules = rules or CallbackRules()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        too_large = error_body(f"upload larger than {self.max_bytes} bytes", field="file")
        length = _header(scope, b"content-length") or ""
        if length.strip().isdigit() and int(length) > self.max_bytes:
            await drain_body(receive, 2 * self.max_bytes)
            await _respond(scope, receive, send, 422, too_large)
            return
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data":
            await drain_body(receive, 2 * self.max_bytes)
            msg = f"content type {ctype or 'none'!r}: send multipart/form-data with the CSV in the field 'file'"
            await _respond(scope, receive, send, 415, error_body(msg))
            return
        try:
            body = await read_body(receive, self.max_bytes, drain_limit=2 * self.max_bytes)
        except BodyTooLarge:
            await _respond(scope, receive, send, 422, too_large)
            return
        if body is None:  # the client went away
            return
        problem = await _check_form(scope, replay_body(body, receive), self.rules)
        if problem is not None:
            await _respond(scope, receive, send, 422, error_body(problem[0], field=problem[1]))
            return
        await self.app(scope, replay_body(body, receive), send)


async def _check_form(scope: Scope, receive: Receive, rules: CallbackRules) -> tuple[str, str] | None:
    try:
        form = await Request(scope, receive).form()
    except Exception as exc:  # a broken multipart body (bad boundary, truncated)
        return f"the multipart body cannot be read: {str(exc)[:200] or type(exc).__name__}", "body"
    try:
        unknown = sorted(set(form.keys()) - {"file", "horizon", *CALLBACK_FIELDS})
        if unknown:
            return (
                f"unknown form field(s) {unknown}; send 'file' and optionally 'horizon', "
                "'callback_url', 'notify_email'",
                unknown[0],
            )
        if len(form.getlist("file")) != 1:  # a file part or a plain field: its bytes are the CSV
            return "send exactly one CSV file in the form field 'file'", "file"
        for name in CALLBACK_FIELDS:
            if len(form.getlist(name)) > 1:
                return f"send {name} at most once", name
        problem = rules.problem({name: form.get(name) for name in CALLBACK_FIELDS})
        if problem is not None:
            return problem
        horizons = form.getlist("horizon")
        if len(horizons) > 1:
            return "send horizon at most once", "horizon"
        horizon = horizons[0] if horizons else None
        if horizon is not None:
            text = horizon if isinstance(horizon, str) else ""
            if not (text.strip().isdigit() and 1 <= int(text) <= MAX_HORIZON):
                return f"horizon must be an integer between 1 and {MAX_HORIZON}", "horizon"
        return None
    finally:
        await form.close()


class ErrorShapeMiddleware:
    """Every error answer in the documented :class:`~serving.bentos.errors.ErrorBody` shape: a 4xx/5xx that
    is not JSON (the server's own 404 for an unknown path, 405 for a wrong method) is answered with the same
    status and headers (``Allow`` kept) and ``{"error": <its text>}`` instead of plain text."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip()
                if message["status"] >= 400 and ctype != b"application/json":
                    start = message  # hold it: the body is replaced
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                text = b"".join(chunks).decode("utf-8", "replace").strip()[:200]
                status = start["status"]
                keep = {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in start.get("headers", [])
                    if k.lower() not in (b"content-type", b"content-length")
                }
                try:
                    phrase = HTTPStatus(status).phrase
                except ValueError:
                    phrase = "error"
                response = JSONResponse(error_body(text or phrase), status_code=status, headers=keep)
                await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            await send(message)

        await self.app(scope, receive, reshape)
