"""POST /v1/completions: raw prompts (text or token ids) in, text out, whole or streamed.

Design choices:
- No chat template and no reasoning split: the legacy endpoint returns exactly what was generated,
  for evaluation harnesses and base models. Text prompts get BOS as DeepSeek's tokenizer adds it.
- A batch of prompts (list of strings or of token-id lists) runs as one request: choice
  `p * n + j` is the j-th sample of prompt p, all generated concurrently. The prompt tokens of every
  prompt count in `usage`; at most MAX_CHOICES choices per request.
- Limits come before work: the prompt count and the total prompt length (characters, or token ids
  against the context) are checked before anything is tokenized, and tokenizing runs in a worker
  thread, so a large batch of prompts never blocks the event loop (and /health) for other clients.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tinyseek.serve.choices import (
    ClientGone,
    close_runs,
    merged_events,
    record_metrics,
    run_to_end,
    start_runs,
    stream_error_event,
)
from tinyseek.serve.errors import APIError
from tinyseek.serve.generation import ChoiceEvent, ChoicePlan, ChoiceRun
from tinyseek.serve.openapi_docs import generation_responses
from tinyseek.serve.planning import (
    build_usage,
    check_prompt_chars,
    choice_plans,
    completion_room,
    engine_params,
)
from tinyseek.serve.protocol import MAX_PROMPTS, Completion, CompletionChoice, CompletionRequest
from tinyseek.serve.state import Ready, ServerState

router = APIRouter()

ROUTE = "/v1/completions"
MAX_CHOICES = MAX_PROMPTS


def _prompt_batch(body: CompletionRequest) -> list[str] | list[list[int]]:
    """The request's prompts as a list: of texts, or of token-id lists."""
    prompt = body.prompt
    if isinstance(prompt, str):
        return [prompt]
    if not prompt or isinstance(prompt[0], int):
        return [prompt]  # type: ignore[list-item, return-value]
    return list(prompt)  # type: ignore[arg-type, return-value]


def _check_batch(
    batch: list[str] | list[list[int]], n: int, max_prompt_chars: int, max_model_len: int
) -> None:
    """Limits that need no tokenizer, checked first so an oversized request costs no tokenization."""
    if len(batch) * n > MAX_CHOICES:
        raise APIError(
            400,
            f"{len(batch)} prompts x n={n} choices is over the limit of {MAX_CHOICES} per request.",
            "n" if n > 1 else "prompt",
            "invalid_value",
        )
    if batch and isinstance(batch[0], str):
        check_prompt_chars(sum(len(text) for text in batch), max_prompt_chars, "prompt")  # type: ignore[misc]
        return
    for ids in batch:
        completion_room(len(ids), max_model_len, None, "prompt")


def _prompt_ids(batch: list[str] | list[list[int]], ready: Ready) -> list[list[int]]:
    """Token ids of each prompt: text gets BOS; token ids are checked against the vocabulary.

    Runs in a worker thread: tokenizing can take long enough to stall every other client. It uses
    `encode_batch`, which releases the GIL (`encode` keeps it: a 1M-character prompt then held the
    event loop for 0.7 s even from a worker thread)."""
    if batch and isinstance(batch[0], str):
        return ready.tokenizer.encode_batch(batch, add_special_tokens=True)  # type: ignore[no-any-return]
    vocab = int(ready.llm.engine.model.config.vocab_size)
    for i, ids in enumerate(batch):
        if not ids:
            raise APIError(400, "A prompt needs at least one token.", "prompt", "invalid_value")
        bad = [t for t in ids if not 0 <= t < vocab]  # type: ignore[operator]
        if bad:
            raise APIError(
                400, f"Prompt {i} has token ids outside [0, {vocab}): {bad[:5]}.", "prompt", "invalid_value"
            )
    return batch  # type: ignore[return-value]


@dataclass
class _Accumulated:
    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Mapping[int, float]] = field(default_factory=list)
    finish_reason: str | None = None

    def add(self, event: ChoiceEvent) -> None:
        self.text.append(event.content)
        if event.logprobs is not None:
            self.token_ids += event.token_ids
            self.logprobs += event.logprobs
        self.finish_reason = event.finish_reason or self.finish_reason


@router.post(
    ROUTE,
    response_model=Completion,
    responses=generation_responses(Completion),
    summary="Text completion (legacy OpenAI endpoint)",
)
async def completions(body: CompletionRequest, request: Request) -> Response:
    state: ServerState = request.app.state.server
    ready = state.ready()
    state.check_model(body.model)
    if body.stream_options is not None and not body.stream:
        raise APIError(
            400, "stream_options is only allowed when stream is true.", "stream_options", "invalid_value"
        )
    batch = _prompt_batch(body)
    _check_batch(batch, body.n, state.settings.max_prompt_chars, ready.max_model_len)
    prompts = await asyncio.to_thread(_prompt_ids, batch, ready)
    plans: list[ChoicePlan] = []
    for ids in prompts:
        max_tokens = completion_room(len(ids), ready.max_model_len, body.max_tokens, "prompt")
        params = engine_params(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop,
            logprobs=body.logprobs,
        )
        plans += choice_plans(ready, ids, params, body.n, body.seed)
    prompt_tokens = sum(len(ids) for ids in prompts)
    started = time.perf_counter()
    runs = await start_runs(ready.loop, plans)
    reply = _Reply(state, ready, body, prompt_tokens, runs, started)
    if body.stream:
        return StreamingResponse(reply.stream(), media_type="text/event-stream")
    try:
        return await reply.whole(request)
    finally:
        close_runs(runs)


class _Reply:
    def __init__(
        self,
        state: ServerState,
        ready: Ready,
        body: CompletionRequest,
        prompt_tokens: int,
        runs: list[ChoiceRun],
        started: float,
    ) -> None:
        self.state, self.ready, self.body = state, ready, body
        self.prompt_tokens, self.runs, self.started = prompt_tokens, runs, started
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _completion(self, choices: list[CompletionChoice], with_usage: bool) -> Completion:
        usage = None
        if with_usage:
            # Each prompt's cache hits are reported by its first choice.
            hits = sum(r.tally.cache_hit_tokens for r in self.runs[:: self.body.n])
            usage = build_usage(self.prompt_tokens, [r.tally for r in self.runs], hits)
        return Completion(
            id=self.id, created=self.created, model=self.body.model, choices=choices, usage=usage
        )

    async def whole(self, request: Request) -> Response:
        parts = [_Accumulated() for _ in self.runs]
        try:
            await run_to_end(request, self.runs, lambda i, event: parts[i].add(event))
        except ClientGone:
            return Response(status_code=499)
        record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
        k = self.body.logprobs
        choices = [
            CompletionChoice(
                index=i,
                text="".join(part.text),
                logprobs=None
                if k is None
                else self.ready.token_bytes.completion_logprobs(part.token_ids, part.logprobs, k),
                finish_reason=part.finish_reason or "stop",  # type: ignore[arg-type]
            )
            for i, part in enumerate(parts)
        ]
        return JSONResponse(self._completion(choices, with_usage=True).model_dump())

    async def stream(self) -> AsyncIterator[str]:
        offsets = [0] * len(self.runs)
        k = self.body.logprobs
        try:
            async for index, event in merged_events(self.runs):
                if (
                    not event.content
                    and event.finish_reason is None
                    and not (k is not None and event.token_ids)
                ):
                    continue
                logprobs = None
                if k is not None and event.logprobs is not None:
                    logprobs = self.ready.token_bytes.completion_logprobs(
                        event.token_ids, event.logprobs, k, offsets[index]
                    )
                offsets[index] += len(event.content)
                choice = CompletionChoice(
                    index=index,
                    text=event.content,
                    logprobs=logprobs,
                    finish_reason=event.finish_reason,  # type: ignore[arg-type]
                )
                chunk = self._completion([choice], with_usage=False)
                yield f"data: {json.dumps(chunk.model_dump(), ensure_ascii=False)}\n\n"
            record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
            if self.body.stream_options is not None and self.body.stream_options.include_usage:
                yield f"data: {json.dumps(self._completion([], with_usage=True).model_dump())}\n\n"
        except Exception as err:
            yield stream_error_event(self.state.metrics, ROUTE, err)
        finally:
            close_runs(self.runs)
        yield "data: [DONE]\n\n"
