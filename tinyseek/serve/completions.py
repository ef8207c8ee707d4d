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
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tinyseek.serve.choices import Accumulated, Reply, merged_events, start_runs
from tinyseek.serve.errors import APIError
from tinyseek.serve.generation import ChoicePlan
from tinyseek.serve.json_body import JSONBodyRoute
from tinyseek.serve.openapi_docs import generation_route
from tinyseek.serve.planning import (
    build_usage,
    check_prompt_chars,
    choice_plans,
    completion_room,
    engine_params,
)
from tinyseek.serve.protocol import MAX_PROMPTS, Completion, CompletionChoice, CompletionRequest
from tinyseek.serve.state import Ready, ServerState

router = APIRouter(route_class=JSONBodyRoute)

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


@generation_route(router, ROUTE, Completion, Completion, "Text completion (legacy OpenAI endpoint)")
async def completions(body: CompletionRequest, request: Request) -> Response:
    state: ServerState = request.app.state.server
    ready = state.ready_for(body.model)
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
    return await _Reply(state, ready, body, prompt_tokens, runs, started).respond(request)


class _Reply(Reply[CompletionRequest]):
    """A text request's response: exactly what was generated, logprobs as text offsets."""

    route = ROUTE
    id_prefix = "cmpl"

    def _completion(self, choices: list[CompletionChoice], with_usage: bool) -> Completion:
        usage = None
        if with_usage:
            # Each prompt's cache hits are reported by its first choice.
            hits = sum(r.tally.cache_hit_tokens for r in self.runs[:: self.body.n])
            usage = build_usage(self.prompt_tokens, [r.tally for r in self.runs], hits)
        return Completion(
            id=self.id, created=self.created, model=self.body.model, choices=choices, usage=usage
        )

    def answer(self, parts: list[Accumulated]) -> dict[str, Any]:
        k = self.body.logprobs
        choices = [
            CompletionChoice(
                index=i,
                text="".join(part.content),
                logprobs=None
                if k is None
                else self.ready.token_bytes.completion_logprobs(part.token_ids, part.logprobs, k),
                finish_reason=part.finish_reason or "stop",  # type: ignore[arg-type]
            )
            for i, part in enumerate(parts)
        ]
        return self._completion(choices, with_usage=True).model_dump()

    async def chunks(self) -> AsyncIterator[str]:
        offsets = [0] * len(self.runs)
        k = self.body.logprobs
        async for index, event in merged_events(self.runs):
            if not event.content and event.finish_reason is None and not (k is not None and event.token_ids):
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

    def usage_chunk(self) -> str:
        return f"data: {json.dumps(self._completion([], with_usage=True).model_dump())}\n\n"
