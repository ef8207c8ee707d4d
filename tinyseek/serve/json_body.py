"""Request bodies parsed by pydantic-core's JSON parser instead of the standard library's.

Design choices:
- Parsing runs on the event loop (FastAPI does it there, and a C parser holds the GIL, so a worker
  thread would stall /health just the same). What matters is how long it takes: a 2 MiB body of 64
  token-id lists took 38-56 ms with `json.loads` and 17 ms with `pydantic_core.from_json` on the
  2-core CPU of the hardening tests, which bound a /health answer during such a body at 100 ms.
- Same values as `json.loads` (NaN/Infinity accepted, big integers kept, the last duplicate key
  wins). A malformed body raises `json.JSONDecodeError`, so FastAPI answers it as it did before:
  a 400 with the parser's message and position. One difference: a lone UTF-16 surrogate escape
  ("\\ud800") is refused as invalid JSON; `json.loads` made it a string the tokenizer could not
  encode, and the server answered 500.
- It plugs in through FastAPI's documented `APIRoute.route_class` hook: routers that take JSON bodies
  pass `route_class=JSONBodyRoute`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute


class JSONBodyRequest(Request):
    """A Starlette request whose `json()` uses pydantic-core's parser."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError as error:
                raise json.JSONDecodeError(str(error), body.decode("utf-8", "replace"), 0) from None
        return self._json


class JSONBodyRoute(APIRoute):
    """An API route whose handler sees a `JSONBodyRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JSONBodyRequest(request.scope, request.receive))

        return handle
