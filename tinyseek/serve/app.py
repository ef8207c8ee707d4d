"""The FastAPI application: routes, middleware order, model loading, graceful shutdown.

Design choices:
- `create_app(settings)` returns a plain FastAPI app; `serve(settings, host, port)` runs it with
  uvicorn. Tests run the same app on a loopback port, so they exercise the real stack.
- Middleware, outermost first: request counting (sees every status, the guard's too), then the guard
  (API key, body size), then FastAPI with the error handlers.
- The model loads in a worker thread once the server listens (`/health` is 503 `loading` until then).
  A load failure is logged and reported by /health and the API (503) rather than killing the process.
- Shutdown (SIGTERM/SIGINT): `DrainingServer` marks the state `draining` at once (new generations
  and /health get 503), uvicorn stops accepting connections and lets in-flight responses finish for
  up to `drain_timeout` seconds, cancels the rest (which aborts their engine requests), and the
  lifespan exit stops the engine thread. uvicorn then re-raises the signal to die by it; `serve`
  installs a no-op SIGTERM handler first, so a drained shutdown exits with status 0.
- Once the model is loaded, `gc.freeze()` moves every object alive then (model, tokenizer, libraries,
  all living as long as the process) out of the cyclic collector's
  generations. Otherwise the request garbage of a burst triggers a full collection that scans them
  all on the event loop: a 107-171 ms stall of /health in a 400-client disconnect storm, gone with it.
- uvicorn picks httptools and uvloop when installed (they are dependencies): with its pure-Python
  h11 parser, a burst of 400 requests sent at once still delayed /health by up to 171 ms; with them,
  by about 20 ms at most (tests/test_serve_fuzz.py measures it).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import tinyseek
from tinyseek.chat_template import THINK_CLOSE
from tinyseek.serve import chat, completions, webchat
from tinyseek.serve.engine_loop import EngineLoop
from tinyseek.serve.errors import install_error_handlers
from tinyseek.serve.guard import RequestGuard
from tinyseek.serve.logprobs import TokenBytes
from tinyseek.serve.metrics import RequestCounter
from tinyseek.serve.openapi_docs import error_responses, install_openapi
from tinyseek.serve.protocol import ChatCompletionChunk, Completion, Health, ModelCard, ModelList
from tinyseek.serve.state import Ready, ServerSettings, ServerState

log = logging.getLogger(__name__)


def _load(state: ServerState) -> Ready:
    """Build the engine from the model directory (runs in a worker thread)."""
    from tinyseek.inference.llm import LLM
    from tinyseek.inference.sampling_params import SamplingParams

    settings = state.settings
    llm = LLM(settings.model_dir, **settings.engine_options)
    tokenizer = llm.tokenizer
    if tokenizer is None:
        raise FileNotFoundError(f"{settings.model_dir} has no tokenizer.json: the server needs a tokenizer")
    if tokenizer.chat_template is not None:
        # The first render imports jinja2 and compiles the template: done here, not while the
        # first request holds the GIL against the event loop.
        tokenizer.apply_chat_template([{"role": "user", "content": "warm-up"}], tokenize=True)
    think_close_id = tokenizer.backend.token_to_id(THINK_CLOSE)
    if settings.engine_options.get("compile"):  # its graphs (batch 1, larger batches) before ready
        warm = SamplingParams(temperature=0, max_tokens=2, ignore_eos=True)
        for batch in (1, 2):
            llm.generate([[0, 1]] * batch, warm)
    loop = EngineLoop(llm.engine, state.metrics, settings.max_queue)
    return Ready(llm, tokenizer, loop, TokenBytes(tokenizer), llm.engine.max_model_len, think_close_id)


async def _load_in_background(state: ServerState) -> None:
    try:
        ready = await asyncio.to_thread(_load, state)
    except Exception as err:
        log.exception("loading %s failed", state.settings.model_dir)
        state.load_error = f"{type(err).__name__}: {err}"
        return
    ready.loop.start()
    gc.collect()  # garbage of the load is freed, not frozen with the rest
    gc.freeze()  # see the module docstring: no full-GC pause scanning the model and libraries
    state.set_ready(ready)
    log.info("serving %s as '%s'", state.settings.model_dir, state.settings.model_name)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.server
    loading = asyncio.create_task(_load_in_background(state))
    try:
        yield
    finally:
        state.status = "draining"
        if not loading.done():
            await loading
        ready = state.loaded
        if ready is not None:
            await ready.loop.stop()


def create_app(settings: ServerSettings) -> FastAPI:
    state = ServerState(settings)
    app = FastAPI(
        title="tinyseek",
        version=tinyseek.__version__,
        description="OpenAI/DeepSeek-compatible API over the tinyseek engine: chat completions with "
        "reasoning_content, completions, models, health and Prometheus metrics.",
        lifespan=_lifespan,
    )
    app.state.server = state
    install_error_handlers(app)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(webchat.router)  # the browser chat at /

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "Loading, failed to load, or shutting down."}},
        summary="Readiness: 200 once the model is loaded",
    )
    async def health() -> Response:
        status = "failed" if state.load_error is not None else state.status
        return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)

    @app.get(
        "/v1/models",
        response_model=ModelList,
        responses=error_responses(401),
        summary="The served model",
    )
    async def models() -> Response:
        ready = state.loaded
        card = ModelCard(
            id=settings.model_name,
            created=state.created,
            max_model_len=ready.max_model_len if ready is not None else 0,
        )
        return JSONResponse(ModelList(data=[card]).model_dump())

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    install_openapi(
        app,
        with_api_key=settings.api_key is not None,
        model_name=settings.model_name,
        event_models=(ChatCompletionChunk, Completion),
    )
    app.add_middleware(RequestGuard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestCounter, metrics=state.metrics)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn.Server that flags the app as draining as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.status = "draining"
        super().handle_exit(sig, frame)


def make_server(
    settings: ServerSettings, host: str, port: int, drain_timeout: float = 30.0
) -> DrainingServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(drain_timeout),
        access_log=False,
    )
    return DrainingServer(config, app.state.server)


def serve(settings: ServerSettings, host: str, port: int, drain_timeout: float = 30.0) -> None:
    """Run until SIGTERM/SIGINT, drain, and return (exit status 0 after a graceful SIGTERM)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # uvicorn re-raises it after draining
    make_server(settings, host, port, drain_timeout).run()
