"""ASGI guard in front of the app: the API key and the request-body size limit.

Design choices:
- Pure ASGI, not a `BaseHTTPMiddleware`: the wrapped app keeps its own `receive`, so it still sees
  the client's `http.disconnect` (which is how a dropped client cancels its generation).
- The key is checked before the body is read, so an unauthenticated client cannot make the server
  parse anything; the comparison is constant-time and on bytes: a header holds arbitrary bytes
  (non-ASCII ones included), and `hmac.compare_digest` raises on non-ASCII `str`, which would turn
  one odd header into a 500. The configured key is printable ASCII (checked at startup). Only `/v1/*` needs the key: `/health` and
  `/metrics` stay open for load balancers and scrapers, `/openapi.json` and `/docs` for clients.
- The body is read up to `max_body_bytes` here and replayed to the app; a larger body (declared by
  Content-Length or found while reading a chunked one) is answered 413 without being parsed.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinyseek.serve.errors import error_json

PROTECTED_PREFIX = "/v1/"


async def _send_error(send: Send, status: int, message: str, code: str, headers: list[Any]) -> None:
    body = error_json(status, message, code=code)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Rejects requests without the API key (401) and bodies over the size limit (413)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = None if api_key is None else api_key.encode("ascii")
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope: Scope) -> bool:
        if self.api_key is None or not scope["path"].startswith(PROTECTED_PREFIX):
            return True
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = bytes(value)
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _send_error(
                send,
                401,
                "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
                "invalid_api_key",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        too_large = (
            f"Request body exceeds the server's limit of {self.max_body_bytes} bytes.",
            "request_too_large",
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_error(send, 413, *too_large, [(b"connection", b"close")])
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _send_error(send, 413, *too_large, [(b"connection", b"close")])
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
