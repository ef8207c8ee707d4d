"""What /openapi.json says beyond the models: streaming bodies, the error statuses, the API key.

Design choices:
- The schema must describe what the server really does, so FastAPI's default 422 (never sent:
  validation errors are 400s) is removed, and every status the guard, the handlers and the queue can
  answer is listed with the error envelope's schema.
- Streaming endpoints declare `text/event-stream` beside `application/json` for 200. The event schema
  follows OpenAPI 3.1 practice for SSE: each event's `data` is either `[DONE]` or JSON
  (`contentMediaType`) holding a chunk or an error envelope (`contentSchema`), so schema-aware
  clients and fuzzers (schemathesis) can check every event.
- The bearer key appears as a security scheme on /v1/* only when the server was started with one.
- `model` is an enum of the one served name: any other name is a 404, so the schema says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tinyseek.serve.guard import PROTECTED_PREFIX
from tinyseek.serve.protocol import ErrorResponse

_ERRORS = {
    400: "Malformed JSON, a bad or unknown parameter (named in `param`), or a prompt beyond the context.",
    401: "Missing or wrong API key (only when the server has one).",
    404: "Unknown model.",
    413: "Request body over the server's size limit.",
    429: "Too many requests in flight; see the Retry-After header.",
    503: "The model is loading, failed to load, or the server is shutting down.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorResponse, "description": _ERRORS[s]} for s in statuses}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def sse_event_schema(chunk: type[BaseModel]) -> dict[str, Any]:
    """One server-sent event of a stream: `data: <chunk JSON | error JSON>` or `data: [DONE]`."""
    json_data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [_ref(chunk), _ref(ErrorResponse)]},
    }
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"anyOf": [{"type": "string", "const": "[DONE]"}, json_data]}},
    }


def generation_route(
    router: APIRouter, route: str, reply: type[BaseModel], chunk: type[BaseModel], summary: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The POST decorator of a generation endpoint: its JSON reply, its stream's chunk, its errors."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": f"JSON when stream is false; with stream=true, server-sent events: `data: "
            f"<{chunk.__name__}>` events, an optional usage chunk, then `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": sse_event_schema(chunk)}},
        },
        **error_responses(400, 401, 404, 413, 429, 503),
    }
    return router.post(route, response_model=reply, responses=responses, summary=summary)


def install_openapi(
    app: FastAPI, with_api_key: bool, model_name: str, event_models: tuple[type[BaseModel], ...]
) -> None:
    """Replace app.openapi with the schema above (built once, cached like FastAPI's)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        schemas = components.get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for name in ("ChatCompletionRequest", "CompletionRequest"):
            schemas[name]["properties"]["model"]["enum"] = [model_name]
        referenced: tuple[type[BaseModel], ...] = (*event_models, ErrorResponse)
        for model in referenced:  # by the SSE event schemas
            definition = model.model_json_schema(
                mode="serialization", ref_template="#/components/schemas/{model}"
            )
            for name, sub in definition.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas.setdefault(model.__name__, definition)
        if with_api_key:
            components.setdefault("securitySchemes", {})["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
                if with_api_key and path.startswith(PROTECTED_PREFIX):
                    operation["security"] = [{"bearerAuth": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
