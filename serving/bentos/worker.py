"""Which worker process answered: the ``X-Stockml-Worker`` response header.

With ``STOCKML_SERVING__WORKERS`` above 1, BentoML runs that many processes behind one socket and the
kernel hands each connection to one of them. What a worker keeps in memory (its LRU cache, its rate
limit buckets while Redis is down, the bandit lock) differs between them, so an operator reading a
surprising answer, and the system tests checking that Redis makes the workers agree, need to know
which one answered. The value is BentoML's worker index (1, 2, ...) and the process id, e.g. ``1:4242``:
nothing a client could use against the service.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

HEADER = b"x-stockml-worker"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def worker_label() -> str:
    """``<worker index>:<pid>``; the index is 0 outside ``bentoml serve`` (tests in process)."""
    from bentoml import server_context

    return f"{server_context.worker_index or 0}:{os.getpid()}"


class WorkerHeaderMiddleware:
    """Adds ``X-Stockml-Worker`` to every HTTP answer, errors (401, 429, ...) included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._label: bytes | None = None  # the index is set once the worker process has started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._label is None:
            self._label = worker_label().encode("latin-1")
        label = self._label

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (HEADER, label)]}
            await send(message)

        await self.app(scope, receive, send_with_header)
