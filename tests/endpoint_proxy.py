"""A misbehaving proxy in front of the real server, for the endpoint-evaluation tests.

Each POST gets an action from `plan(n)` (n counts the POSTs): "pass" forwards it; "429" and "500"
answer at once with an OpenAI-style error; "late500" forwards (the server does the work) and then
answers 500 anyway; "stall" waits `stall_seconds` before forwarding, longer than the client's
timeout (or, with `release_after`, until that many other requests have gone by, so that a test of
"the others go on meanwhile" does not depend on the machine's speed); "401" refuses for good. Everything runs over real HTTP on loopback ports.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.serve_harness import free_port


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "injected", "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


class FlakyProxy:
    """Forwards /v1/* to `upstream`, misbehaving as `plan` says; counts what it forwarded."""

    def __init__(
        self,
        upstream: str,
        plan: Callable[[int], str],
        stall_seconds: float = 3.0,
        release_after: int | None = None,
    ) -> None:
        self.upstream = upstream
        self.plan = plan
        self.stall_seconds = stall_seconds
        self.release_after = release_after
        self.posts = 0
        self.forwarded = 0
        self.actions: list[str] = []
        self.forwarded_during_stalls: list[int] = []  # requests forwarded while each stall waited
        self._client: httpx.AsyncClient | None = None  # one pool: a client per request costs ~0.1 s of CPU
        app = FastAPI()
        app.post("/v1/{path:path}")(self._forward)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("proxy not listening after 30s")
            time.sleep(0.02)

    async def _forward(self, path: str, request: Request) -> Response:
        action = self.plan(self.posts)
        self.posts += 1
        self.actions.append(action)
        if action == "429":
            return _error(429, "injected rate limit", {"Retry-After": "0"})
        if action == "500":
            return _error(500, "injected server error")
        if action == "401":
            return _error(401, "injected: wrong API key")
        body = await request.body()  # before a stall: the client may be gone after it
        if action == "stall":
            before = self.forwarded
            deadline = time.monotonic() + self.stall_seconds
            while time.monotonic() < deadline:
                if self.release_after is not None and self.forwarded - before >= self.release_after:
                    break
                await asyncio.sleep(0.02)
            self.forwarded_during_stalls.append(self.forwarded - before)
        headers: dict[str, Any] = {"content-type": "application/json"}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120)
        reply = await self._client.post(f"{self.upstream}/v1/{path}", content=body, headers=headers)
        self.forwarded += 1
        if action == "late500":
            return _error(500, "injected error after the work was done")
        return Response(reply.content, reply.status_code, media_type="application/json")

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # stalled handlers are not worth waiting for
        self.thread.join(timeout=10)
