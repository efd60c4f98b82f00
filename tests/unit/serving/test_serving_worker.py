"""The ``X-Stockml-Worker`` header: which worker process answered, on every answer, errors included."""

from __future__ import annotations

import os

from asgi_client import ASGIClient
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.bentos.auth import KeyStore
from serving.bentos.middleware import ApiKeyMiddleware
from serving.bentos.worker import WorkerHeaderMiddleware, worker_label


async def _ok(request) -> JSONResponse:
    return JSONResponse({"ok": True}, headers={"X-Other": "kept"})


def _client() -> ASGIClient:
    app = Starlette(routes=[Route("/x", _ok, methods=["GET"])])
    return ASGIClient(WorkerHeaderMiddleware(ApiKeyMiddleware(app, KeyStore("k:user"), disabled=False)))


def test_every_answer_names_its_worker():
    c = _client()
    ok = c.get("/x", headers={"Authorization": "Bearer k"})
    refused = c.get("/x")  # 401 from the auth middleware inside
    assert (ok.status_code, refused.status_code) == (200, 401)
    assert ok.headers["x-stockml-worker"] == refused.headers["x-stockml-worker"] == f"0:{os.getpid()}"
    assert ok.headers["x-other"] == "kept"  # the app's own headers stay


def test_worker_label_is_bentomls_worker_index_and_the_pid(monkeypatch):
    from bentoml import server_context

    monkeypatch.setattr(server_context, "worker_index", 2)
    assert worker_label() == f"2:{os.getpid()}"
