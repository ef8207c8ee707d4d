"""Server settings and the state the routes share: the loaded engine, its tokenizer, readiness.

Design choices:
- The model loads on a background thread after the server starts listening, so `/health` can say
  503 `loading` (and the API 503 with Retry-After) instead of the port refusing connections.
- `draining` is set when shutdown begins (SIGTERM): new generations get 503 while the ones in flight
  finish, and load balancers see /health go 503.
- Routes reach everything through `ServerState.ready()`, which raises the API error that matches the
  phase (loading, draining, failed), so no route can run against a half-built engine.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyseek.serve.engine_loop import EngineLoop
from tinyseek.serve.errors import APIError
from tinyseek.serve.logprobs import TokenBytes
from tinyseek.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)

API_KEY_ENV = "TINYSEEK_API_KEY"


def _check_api_key(key: str) -> None:
    """Refuse a key no client could send: it travels in an HTTP header, which carries ASCII bytes and
    trims surrounding spaces, so a non-ASCII, whitespace or control character would lock every client
    out. The key itself is never echoed (it is a secret); the offending character is."""
    if not key:
        raise ValueError("api_key: expected a non-empty key")
    for position, char in enumerate(key):
        if not (char.isascii() and char.isprintable()) or char.isspace():
            raise ValueError(
                f"api_key: character {position} is {char!r}; expected printable ASCII without spaces "
                "(the key is sent in an 'Authorization: Bearer' header)"
            )


@dataclass(frozen=True)
class ServerSettings:
    """Everything `tinyseek serve` configures; engine_options go to `LLM`/`Engine` as is."""

    model_dir: Path
    served_model_name: str | None = None
    api_key: str | None = None
    max_queue: int = 256
    max_reasoning_tokens: int | None = None
    max_body_bytes: int = 2 * 2**20
    max_prompt_chars: int = 2**20
    engine_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue={self.max_queue}: expected a positive integer")
        if self.max_reasoning_tokens is not None and self.max_reasoning_tokens < 1:
            raise ValueError(f"max_reasoning_tokens={self.max_reasoning_tokens}: expected a positive integer")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes={self.max_body_bytes}: expected at least 1024")
        if self.max_prompt_chars < 1:
            raise ValueError(f"max_prompt_chars={self.max_prompt_chars}: expected a positive integer")
        if self.api_key is not None:
            _check_api_key(self.api_key)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model_dir.name

    @staticmethod
    def key_from_env(explicit: str | None) -> str | None:
        """The --api-key value, else $TINYSEEK_API_KEY, else None (no authentication)."""
        return explicit if explicit is not None else (os.environ.get(API_KEY_ENV) or None)


@dataclass
class Ready:
    """What a route needs once the model is loaded."""

    llm: Any
    tokenizer: Any
    loop: EngineLoop
    token_bytes: TokenBytes
    max_model_len: int
    think_close_id: int | None


class ServerState:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.status = "loading"
        self.load_error: str | None = None
        self._ready: Ready | None = None
        self.created = int(time.time())

    def set_ready(self, ready: Ready) -> None:
        self._ready = ready
        self.status = "ok"

    @property
    def loaded(self) -> Ready | None:
        """The engine and tokenizer once loaded, whatever the phase (for shutdown and listings)."""
        return self._ready

    def ready(self) -> Ready:
        if self.status == "draining":
            raise APIError(503, "The server is shutting down.", code="shutting_down")
        if self._ready is None:
            if self.load_error is not None:
                raise APIError(503, f"The model failed to load: {self.load_error}", code="model_load_failed")
            raise APIError(503, "The model is loading.", code="model_loading", headers={"Retry-After": "1"})
        return self._ready

    def ready_for(self, model: str) -> Ready:
        """The loaded engine, for a request that names `model` (503 while not ready, 404 for another model)."""
        ready = self.ready()
        self.check_model(model)
        return ready

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise APIError(
                404,
                f"The model '{name}' does not exist; this server serves '{self.settings.model_name}'.",
                param="model",
                code="model_not_found",
            )
