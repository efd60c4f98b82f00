"""Typed errors of the serving engine, the one error body every non-200 answer carries, and how a
pydantic validation failure becomes that body.

The engine (:mod:`serving.bentos.engine`) raises a :class:`ServingError` subclass; the HTTP layer
(:mod:`serving.bentos.http`) answers its ``status`` with :meth:`ServingError.body` and ``headers``.
The middlewares (auth, rate limits, body limits) answer with the same :class:`ErrorBody` shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is: a dotted path into the body (items[0].history[3].y), "
                       "a form field, or 'body'.")  # fmt: skip
    message: str = Field(description="Why it was refused.")
    type: str = Field(description="A machine-readable kind (pydantic's error type, or value_error).")


class ErrorBody(BaseModel):
    """Every error answer: a one-line ``error``, per-field ``detail`` for invalid input, and extra context
    keys some answers add (``max_body_bytes`` on 413, ``retry_after_s`` on 429, ``registry_error`` on 503,
    ``state``/``progress`` on 409)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="What went wrong, in one line; never a traceback.")
    detail: list[ErrorDetail] | None = Field(default=None, description="Each failing field (422, and 404 on ids).")


def field_path(loc: tuple[int | str, ...]) -> str:
    """("items", 0, "history", 3, "y") -> "items[0].history[3].y"; () -> "body"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_body(exc: ValidationError | list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body: every failing field with the reason, never the offending input.

    ``exc``: a pydantic error, or its ``errors()`` (FastAPI's form/query validation, whose locations
    start with ``body``/``query``: that prefix is dropped, as the field path is relative to the body)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
    else:
        errors = exc
    detail = []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if loc and loc[0] in ("body", "query", "form") and len(loc) > 1:
            loc = loc[1:]
        if e.get("type") == "json_invalid":
            loc = ()
        detail.append({"field": field_path(loc), "message": str(e.get("msg", "invalid")), "type": str(e.get("type"))})
    first = detail[0] if detail else {"field": "body", "message": "invalid request"}
    return {"error": f"invalid request: {first['field']}: {first['message']}", "detail": detail}


def error_body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["detail"] = [{"field": field, "message": message, "type": "value_error"}]
    body.update(extra)
    return body


class ServingError(Exception):
    """A request the engine cannot answer with a 200; ``status`` is the HTTP status it maps to."""

    status: int = 500

    def __init__(self, message: str, field: str | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.message, self.field, self.headers, self.extra = message, field, headers or {}, extra

    def body(self) -> dict[str, Any]:
        return error_body(self.message, field=self.field, **self.extra)


class InvalidInput(ServingError):
    """The input passed the schema but cannot be used (a history the model refuses, a broken CSV)."""

    status = 422


class NotFound(ServingError):
    """An id (forecast_id, job_id) the service does not know."""

    status = 404


class Conflict(ServingError):
    """The resource exists but is not in the state asked for (a batch job not done yet)."""

    status = 409


class NotReady(ServingError):
    """No champion model is loaded (yet): retry later."""

    status = 503

    def __init__(self, message: str = "no champion model is loaded yet", **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": "5"}, **extra)


class ModelFailure(ServingError):
    """The model answered something unusable (no forecast for a SKU it was asked about)."""

    status = 500
