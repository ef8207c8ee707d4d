"""Every failure leaves the server in OpenAI's error envelope: `{"error": {message, type, param, code}}`.

Design choices:
- Handlers raise `APIError(status, message, param=..., code=...)`; one exception handler renders it,
  so the envelope is written in one place (and by `error_json` for the ASGI guard, which answers
  before FastAPI sees the request).
- Request validation (FastAPI's 422) becomes 400, as OpenAI answers bad parameters. `param` names the
  field the way OpenAI does: dotted path with list indices in brackets, e.g. `messages[0].role`.
  pydantic reports one error per member of a union (`stop` may be a string or a list); those share a
  location prefix, which is the parameter we name. Codes: `invalid_json`, `missing_required_parameter`,
  `unknown_parameter`, `invalid_type`, `invalid_value`.
- Starlette's own HTTP errors (unknown route 404, wrong method 405, unparsable body 400) get the
  envelope too; anything else is a server bug: logged with its traceback, answered 500 without details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "overloaded_error",
}


class APIError(Exception):
    """An error the client should see: status, message, and the parameter at fault if any."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def error_json(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps(error_body(status, message, param, code)).encode()


def param_name(loc: Sequence[str | int]) -> str | None:
    """('body', 'messages', 0, 'role') -> 'messages[0].role'; None for the body itself."""
    name = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _common_prefix(locs: list[tuple[str | int, ...]]) -> tuple[str | int, ...]:
    prefix = locs[0]
    for loc in locs[1:]:
        size = 0
        while size < min(len(prefix), len(loc)) and prefix[size] == loc[size]:
            size += 1
        prefix = prefix[:size]
    return prefix


def validation_error(errors: Sequence[Mapping[str, Any]]) -> APIError:
    """The first bad parameter of a pydantic/FastAPI validation failure, as a 400."""
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return APIError(400, f"The request body is not valid JSON: {detail}", code="invalid_json")
    field = loc[:2]
    same_field = [tuple(e.get("loc", ())) for e in errors if tuple(e.get("loc", ()))[:2] == field]
    param = param_name(_common_prefix(same_field)) if len(same_field) > 1 else param_name(loc)
    if kind == "missing":
        if param is None:
            return APIError(400, "The request needs a JSON body.", code="missing_required_parameter")
        return APIError(400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    if kind == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param, "unknown_parameter")
    code = "invalid_type" if kind.endswith("_type") or kind.startswith("union") else "invalid_value"
    return APIError(400, f"Invalid value for '{param or 'body'}': {first.get('msg', kind)}.", param, code)


def _render(err: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(err.status, err.message, err.param, err.code), status_code=err.status, headers=err.headers
    )


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return _render(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _render(validation_error(exc.errors()))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Unknown route {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    code = {404: "unknown_route", 405: "method_not_allowed"}.get(exc.status_code)
    return _render(APIError(exc.status_code, message, code=code, headers=exc.headers))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return _render(APIError(500, "Internal server error.", code="internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
