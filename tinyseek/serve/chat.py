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
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tinyseek.chat_template import ChatTemplateError
from tinyseek.serve.choices import Accumulated, Reply, merged_events, start_runs
from tinyseek.serve.errors import APIError
from tinyseek.serve.generation import ChoiceRun
from tinyseek.serve.json_body import JSONBodyRoute
from tinyseek.serve.openapi_docs import generation_route
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

router = APIRouter(route_class=JSONBodyRoute)

ROUTE = "/v1/chat/completions"
SUMMARY = "Chat completion with reasoning_content (DeepSeek API shape)"


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


@generation_route(router, ROUTE, ChatCompletion, ChatCompletionChunk, SUMMARY)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    state: ServerState = request.app.state.server
    ready = state.ready_for(body.model)
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
    return await _Reply(state, ready, body, len(prompt_ids), runs, started, in_reasoning).respond(request)


class _Reply(Reply[ChatCompletionRequest]):
    """A chat request's response: reasoning apart from content, logprobs per token entry."""

    route = ROUTE
    id_prefix = "chatcmpl"

    def __init__(self, state: ServerState, ready: Ready, body: ChatCompletionRequest, prompt_tokens: int,
                 runs: list[ChoiceRun], started: float, in_reasoning: bool) -> None:  # fmt: skip
        super().__init__(state, ready, body, prompt_tokens, runs, started)
        self.in_reasoning = in_reasoning
        self.top = body.top_logprobs or 0

    def _usage(self) -> Any:
        tallies = [r.tally for r in self.runs]
        return build_usage(self.prompt_tokens, tallies, self.runs[0].tally.cache_hit_tokens)

    def _logprobs(self, token_ids: list[int], logprobs: list[Mapping[int, float]]) -> list[TokenLogprob]:
        return self.ready.token_bytes.chat_entries(token_ids, logprobs, self.top)

    def answer(self, parts: list[Accumulated]) -> dict[str, Any]:
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
        return completion.model_dump()

    def _chunk(self, index: int, delta: ChatDelta, finish: str | None = None, logprobs: Any = None) -> str:
        chunk = ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.body.model,
            choices=[ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)],  # type: ignore[arg-type]
        )
        return f"data: {json.dumps(chunk.model_dump(exclude_none=True), ensure_ascii=False)}\n\n"

    async def chunks(self) -> AsyncIterator[str]:
        pending: list[tuple[list[int], list[Mapping[int, float]]]] = [([], []) for _ in self.runs]

        def take_logprobs(index: int) -> ChatLogprobs | None:
            if not self.body.logprobs:
                return None
            ids, lps = pending[index]
            pending[index] = ([], [])
            return ChatLogprobs(content=self._logprobs(ids, lps))

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

    def usage_chunk(self) -> str:
        usage_chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.body.model, choices=[], usage=self._usage()
        )
        return f"data: {json.dumps(usage_chunk.model_dump(exclude_none=True))}\n\n"
