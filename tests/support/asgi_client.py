"""A synchronous client for an ASGI app in-process (middleware tests without a server)."""

from __future__ import annotations

import asyncio

import httpx


class ASGIClient:
    """A synchronous face on httpx's ASGI transport: the middleware stack runs in-process."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, url: str, **kw) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> httpx.Response:
        return self.request("POST", url, **kw)
