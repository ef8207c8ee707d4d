"""Running the choices of one API request: admission, merged streaming, disconnects, metrics.

Design choices:
- All choices are admitted before any response byte is sent: a full queue is a 429 with Retry-After,
  and a request the engine refuses is a 400, for streaming requests too.
- The n choices of a request generate concurrently; their events are merged in arrival order (each
  event carries its choice index, as OpenAI's chunks do).
- A non-streaming request watches its connection while it waits: when the client goes away the
  choices are released, which aborts them in the engine and frees their cache. Streaming responses
  get the same from Starlette, which cancels the body iterator on disconnect; callers release in
  `finally`.
- A stream fails after its 200 has been sent, so its failure is told in-band: every exception (not
  only the expected ones) ends it with one `data: {"error": ...}` event in OpenAI's envelope, then
  `[DONE]`; it is counted in `tinyseek_stream_errors_total` and logged, with the traceback when it is
  a bug. A bug's message stays in the log, the client gets a generic one. Cancellation (a client
  that left) is not an Exception and passes through untouched.
- `Reply` is that life cycle once for both generation endpoints: the chat and text replies only say
  how their answer and their chunks look.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tinyseek.serve.engine_loop import EngineLoop, EngineStopped, QueueFull
from tinyseek.serve.errors import APIError, error_body
from tinyseek.serve.generation import ChoiceEvent, ChoicePlan, ChoiceRun
from tinyseek.serve.metrics import ServerMetrics
from tinyseek.serve.protocol import ChatCompletionRequest, CompletionRequest
from tinyseek.serve.state import Ready, ServerState

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def start_runs(loop: EngineLoop, plans: Sequence[ChoicePlan]) -> list[ChoiceRun]:
    try:
        loop.reserve(len(plans))
    except QueueFull as err:
        raise APIError(
            429,
            f"The server is at capacity ({err}); retry after {RETRY_AFTER_SECONDS}s.",
            code="queue_full",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from err
    except EngineStopped as err:
        raise APIError(503, f"The server is not taking requests: {err}.", code="unavailable") from err
    runs = [ChoiceRun(loop, plan) for plan in plans]
    try:
        for run in runs:
            await run.start()
    except ValueError as err:
        close_runs(runs)
        raise APIError(400, str(err), code="invalid_value") from err
    except BaseException:
        close_runs(runs)
        raise
    return runs


def close_runs(runs: Sequence[ChoiceRun]) -> None:
    for run in runs:
        run.close()


async def merged_events(runs: Sequence[ChoiceRun]) -> AsyncIterator[tuple[int, ChoiceEvent]]:
    """(choice index, event) from all runs, as they come."""
    if len(runs) == 1:
        async for event in runs[0].events():
            yield 0, event
        return
    queue: asyncio.Queue[tuple[int, ChoiceEvent | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, run: ChoiceRun) -> None:
        try:
            async for event in run.events():
                queue.put_nowait((index, event))
            queue.put_nowait((index, None))
        except Exception as err:
            queue.put_nowait((index, err))

    tasks = [asyncio.create_task(pump(i, run)) for i, run in enumerate(runs)]
    try:
        remaining = len(runs)
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_to_end(
    request: Request, runs: Sequence[ChoiceRun], consume: Callable[[int, ChoiceEvent], None]
) -> None:
    """Drive every choice to its end, feeding events to `consume`; ClientGone if the client left."""

    async def drive() -> None:
        async for index, event in merged_events(runs):
            consume(index, event)

    work = asyncio.create_task(drive())
    watcher = asyncio.create_task(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()
    if work not in done:
        raise ClientGone()
    try:
        work.result()
    except EngineStopped as err:  # shutdown under the request: the server is unavailable, not broken
        raise APIError(503, f"The request was ended: {err}.", code="shutting_down") from err


def record_metrics(
    metrics: ServerMetrics, started: float, prompt_tokens: int, runs: Sequence[ChoiceRun]
) -> None:
    """Tokens, prefix-cache counts, time to first token and latency of a finished request."""
    metrics.record_prompt(prompt_tokens, runs[0].tally.cache_hit_tokens if runs else 0)
    metrics.completion_tokens.inc(sum(r.tally.completion_tokens for r in runs))
    firsts = [r.tally.first_token_at for r in runs if r.tally.first_token_at is not None]
    if firsts:
        metrics.ttft.observe(min(firsts) - started)
    metrics.latency.observe(time.perf_counter() - started)


def stream_error_event(metrics: ServerMetrics, route: str, err: Exception) -> str:
    """The server-sent event that ends a stream which failed with `err`, counted and logged."""
    metrics.stream_errors.labels(route=route).inc()
    if isinstance(err, APIError):
        log.warning("stream on %s ended by an error: %s", route, err.message)
        body = error_body(err.status, err.message, err.param, err.code)
    elif isinstance(err, EngineStopped):
        log.warning("stream on %s ended: %s", route, err)
        body = error_body(503, f"The stream was ended: {err}.", code="shutting_down")
    else:
        log.error("stream on %s failed with %s", route, type(err).__name__, exc_info=err)
        body = error_body(500, "Internal server error; the stream was ended.", code="internal_error")
    return f"data: {json.dumps(body)}\n\n"


@dataclass
class Accumulated:
    """One choice's whole answer, for the non-streaming reply."""

    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Mapping[int, float]] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, event: ChoiceEvent) -> None:
        self.reasoning.append(event.reasoning)
        self.content.append(event.content)
        if event.logprobs is not None:
            self.token_ids += event.token_ids
            self.logprobs += event.logprobs
        self.finish_reason = event.finish_reason or self.finish_reason


Body = TypeVar("Body", ChatCompletionRequest, CompletionRequest)


class Reply(ABC, Generic[Body]):
    """The response of one admitted request, built from its choices' events: whole, or streamed."""

    route: str
    id_prefix: str

    def __init__(
        self,
        state: ServerState,
        ready: Ready,
        body: Body,
        prompt_tokens: int,
        runs: list[ChoiceRun],
        started: float,
    ) -> None:
        self.state = state
        self.ready = ready
        self.body: Body = body
        self.prompt_tokens = prompt_tokens
        self.runs = runs
        self.started = started
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    async def respond(self, request: Request) -> Response:
        """The streamed response when asked for, else the whole one (the runs released either way)."""
        if self.body.stream:
            return StreamingResponse(self.stream(), media_type="text/event-stream")
        try:
            return await self.whole(request)
        finally:
            close_runs(self.runs)

    async def whole(self, request: Request) -> Response:
        parts = [Accumulated() for _ in self.runs]
        try:
            await run_to_end(request, self.runs, lambda i, event: parts[i].add(event))
        except ClientGone:
            return Response(status_code=499)
        record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
        return JSONResponse(self.answer(parts))

    async def stream(self) -> AsyncIterator[str]:
        try:
            async for chunk in self.chunks():
                yield chunk
            record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
            if self.body.stream_options is not None and self.body.stream_options.include_usage:
                yield self.usage_chunk()
        except Exception as err:
            yield stream_error_event(self.state.metrics, self.route, err)
        finally:
            close_runs(self.runs)
        yield "data: [DONE]\n\n"

    @abstractmethod
    def answer(self, parts: list[Accumulated]) -> dict[str, Any]:
        """The whole response's JSON body."""

    @abstractmethod
    def chunks(self) -> AsyncIterator[str]:
        """The stream's server-sent events, up to the last choice's end."""

    @abstractmethod
    def usage_chunk(self) -> str:
        """The final event with the request's usage (when the client asked for it)."""
