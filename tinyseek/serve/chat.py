"""POST /v1/chat/completions: R1 chat template in, reasoning and answer out, whole or streamed.

Design choices:
- Messages go through the tokenizer's chat template (R1's: BOS, system, `<｜User｜>`, `<｜Assistant｜>`,
  generation prompt `<｜Assistant｜><think>\\n`). Reasoning a client sends back (`reasoning_content`,
  `reasoning`, or a `<think>` block left in an assistant `content`) never reaches the model: the
  extra fields are dropped here and the template keeps only the text after `</think>`.
- The completion is split at `</think>`: `reasoning_content` (and the same text as `reasoning`) and
  `content`. A prompt that does not end inside `<think>` (another template) has no reasoning: the
  reasoning fields are null and everything is content.
- Streaming follows OpenAI's chunk format: a first chunk with the role, then chunks whose delta
  carries either reasoning (`reasoning_content` + `reasoning`) or `content`, a last chunk per choice
  with `finish_reason`, an optional usage chunk (`stream_options.include_usage`), then `[DONE]`.
  Logprobs ride on the next chunk of their choice, so none are lost while text is held back
  (an incomplete UTF-8 character, a possible stop string or a possible `</think>`).
- An error after the stream has started is sent as a `data: {"error": ...}` event before `[DONE]`,
  whatever the exception (see `choices.stream_error_event`).
- The messages' total length is checked before rendering; rendering and tokenizing run in a worker
  thread, so a long prompt never blocks the event loop (and /health) for other clients.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tinyseek.chat_template import ChatTemplateError
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
from tinyseek.serve.generation import ChoiceEvent, ChoiceRun
from tinyseek.serve.openapi_docs import generation_responses
from tinyseek.serve.planning import (
    build_usage,
    check_prompt_chars,
    choice_plans,
    completion_room,
    engine_params,
)
from tinyseek.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatLogprobs,
    ChatMessage,
    TokenLogprob,
)
from tinyseek.serve.reasoning import prompt_opens_reasoning
from tinyseek.serve.state import Ready, ServerState

router = APIRouter()

ROUTE = "/v1/chat/completions"


def _template_message(message: ChatMessage) -> dict[str, str]:
    """The role and text the template sees; reasoning fields and names are dropped."""
    role = "system" if message.role == "developer" else message.role
    content = (
        message.content if isinstance(message.content, str) else "".join(p.text for p in message.content)
    )
    return {"role": role, "content": content}


def _check_combinations(body: ChatCompletionRequest) -> None:
    if body.stream_options is not None and not body.stream:
        raise APIError(
            400, "stream_options is only allowed when stream is true.", "stream_options", "invalid_value"
        )
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs set to true.", "top_logprobs", "invalid_value")
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise APIError(
            400,
            "Set max_tokens or max_completion_tokens, not both.",
            "max_completion_tokens",
            "invalid_value",
        )


def _render_prompt(ready: Ready, messages: list[dict[str, str]]) -> tuple[str, list[int]]:
    """The templated prompt and its token ids; runs in a worker thread, off the event loop, and
    tokenizes with `encode_batch`, which releases the GIL (`encode` would hold it, and so the loop)."""
    try:
        text = ready.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except ChatTemplateError as err:
        raise APIError(400, f"The messages cannot be rendered: {err}", "messages", "invalid_value") from err
    return text, ready.tokenizer.encode_batch([text], add_special_tokens=False)[0]


@dataclass
class _Accumulated:
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


@router.post(
    ROUTE,
    response_model=ChatCompletion,
    responses=generation_responses(ChatCompletionChunk),
    summary="Chat completion with reasoning_content (DeepSeek API shape)",
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    state: ServerState = request.app.state.server
    ready = state.ready()
    state.check_model(body.model)
    _check_combinations(body)
    messages = [_template_message(m) for m in body.messages]
    check_prompt_chars(sum(len(m["content"]) for m in messages), state.settings.max_prompt_chars, "messages")
    prompt_text, prompt_ids = await asyncio.to_thread(_render_prompt, ready, messages)
    in_reasoning = prompt_opens_reasoning(prompt_text)
    budget = (body.max_reasoning_tokens or state.settings.max_reasoning_tokens) if in_reasoning else None
    if body.max_reasoning_tokens is not None and ready.think_close_id is None:
        raise APIError(
            400,
            "max_reasoning_tokens needs a tokenizer with a single </think> token; this one has none.",
            "max_reasoning_tokens",
            "unsupported_parameter",
        )
    reserved = body.max_reasoning_tokens + 1 if budget and body.max_reasoning_tokens else 0
    requested = body.max_tokens if body.max_tokens is not None else body.max_completion_tokens
    max_tokens = completion_room(len(prompt_ids), ready.max_model_len, requested, "messages", reserved)
    params = engine_params(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
    )
    plans = choice_plans(ready, prompt_ids, params, body.n, body.seed, in_reasoning, budget)
    started = time.perf_counter()
    runs = await start_runs(ready.loop, plans)
    reply = _Reply(state, ready, body, len(prompt_ids), in_reasoning, runs, started)
    if body.stream:
        return StreamingResponse(reply.stream(), media_type="text/event-stream")
    try:
        return await reply.whole(request)
    finally:
        close_runs(runs)


class _Reply:
    """Builds the response of one admitted chat request from its choices' events."""

    def __init__(
        self,
        state: ServerState,
        ready: Ready,
        body: ChatCompletionRequest,
        prompt_tokens: int,
        in_reasoning: bool,
        runs: list[ChoiceRun],
        started: float,
    ) -> None:
        self.state, self.ready, self.body = state, ready, body
        self.prompt_tokens, self.in_reasoning, self.runs, self.started = (
            prompt_tokens,
            in_reasoning,
            runs,
            started,
        )
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.top = body.top_logprobs or 0

    def _usage(self) -> Any:
        tallies = [r.tally for r in self.runs]
        return build_usage(self.prompt_tokens, tallies, self.runs[0].tally.cache_hit_tokens)

    def _logprobs(self, token_ids: list[int], logprobs: list[Mapping[int, float]]) -> list[TokenLogprob]:
        return self.ready.token_bytes.chat_entries(token_ids, logprobs, self.top)

    async def whole(self, request: Request) -> Response:
        parts = [_Accumulated() for _ in self.runs]
        try:
            await run_to_end(request, self.runs, lambda i, event: parts[i].add(event))
        except ClientGone:
            return Response(status_code=499)
        record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
        choices = []
        for index, part in enumerate(parts):
            reasoning = "".join(part.reasoning) if self.in_reasoning else None
            choices.append(
                ChatChoice(
                    index=index,
                    message=AssistantMessage(
                        content="".join(part.content), reasoning_content=reasoning, reasoning=reasoning
                    ),
                    logprobs=ChatLogprobs(content=self._logprobs(part.token_ids, part.logprobs))
                    if self.body.logprobs
                    else None,
                    finish_reason=part.finish_reason or "stop",  # type: ignore[arg-type]
                )
            )
        completion = ChatCompletion(
            id=self.id, created=self.created, model=self.body.model, choices=choices, usage=self._usage()
        )
        return JSONResponse(completion.model_dump())

    def _chunk(self, index: int, delta: ChatDelta, finish: str | None = None, logprobs: Any = None) -> str:
        chunk = ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.body.model,
            choices=[ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)],  # type: ignore[arg-type]
        )
        return f"data: {json.dumps(chunk.model_dump(exclude_none=True), ensure_ascii=False)}\n\n"

    async def stream(self) -> AsyncIterator[str]:
        pending: list[tuple[list[int], list[Mapping[int, float]]]] = [([], []) for _ in self.runs]

        def take_logprobs(index: int) -> ChatLogprobs | None:
            if not self.body.logprobs:
                return None
            ids, lps = pending[index]
            pending[index] = ([], [])
            return ChatLogprobs(content=self._logprobs(ids, lps))

        try:
            for index in range(len(self.runs)):
                yield self._chunk(index, ChatDelta(role="assistant", content=""))
            async for index, event in merged_events(self.runs):
                if event.logprobs is not None:
                    pending[index][0].extend(event.token_ids)
                    pending[index][1].extend(event.logprobs)
                if event.reasoning:
                    text = event.reasoning
                    yield self._chunk(
                        index, ChatDelta(reasoning_content=text, reasoning=text), None, take_logprobs(index)
                    )
                if event.content:
                    yield self._chunk(index, ChatDelta(content=event.content), None, take_logprobs(index))
                if event.finish_reason is not None:
                    yield self._chunk(index, ChatDelta(), event.finish_reason, take_logprobs(index))
            record_metrics(self.state.metrics, self.started, self.prompt_tokens, self.runs)
            if self.body.stream_options is not None and self.body.stream_options.include_usage:
                usage_chunk = ChatCompletionChunk(
                    id=self.id, created=self.created, model=self.body.model, choices=[], usage=self._usage()
                )
                yield f"data: {json.dumps(usage_chunk.model_dump(exclude_none=True))}\n\n"
        except Exception as err:
            yield stream_error_event(self.state.metrics, ROUTE, err)
        finally:
            close_runs(self.runs)
        yield "data: [DONE]\n\n"
