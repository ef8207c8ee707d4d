"""One choice of an API request: engine requests in, reasoning/answer events out, tokens counted.

Design choices:
- Each choice is its own engine request (choice i of a seeded request uses seed + i), so a choice
  reproduces exactly when the same request is made alone, and choices stream independently.
- Reasoning budget, done in the server over the engine's public API: the reasoning phase runs with
  `max_tokens = budget` and `</think>` as a stop token. If it closes on its own or reaches the budget
  (the server then appends `</think>`), the answer phase continues from prompt + reasoning +
  `</think>` (a prefix-cache hit, so the continuation costs no recomputation beyond the last block)
  with its own `max_tokens`. An end of sequence or a stop string during the reasoning ends the choice.
  Without a budget a single engine request runs and `max_tokens` counts every completion token.
- Counting is in token space: `reasoning_tokens` are the completion tokens before the first `</think>`
  token (the marker itself is not reasoning), the same place where the text is split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

from tinyseek.chat_template import THINK_CLOSE
from tinyseek.inference.request import Delta
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.serve.engine_loop import EngineLoop, Generation
from tinyseek.serve.reasoning import ReasoningSplitter


@dataclass(frozen=True)
class ChoicePlan:
    """What one choice asks: prompt, sampling, and how the completion is split and budgeted."""

    prompt_ids: list[int]
    params: SamplingParams  # max_tokens: all completion tokens, or the answer's under a budget
    max_model_len: int
    in_reasoning: bool = False
    reasoning_budget: int | None = None
    think_close_id: int | None = None


@dataclass
class ChoiceEvent:
    """What a choice gained: split text, the tokens behind it, and finally why it ended."""

    reasoning: str = ""
    content: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: Sequence[Mapping[int, float]] | None = None
    finish_reason: str | None = None


@dataclass
class ChoiceTally:
    """Per-choice accounting for `usage` and metrics."""

    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hit_tokens: int = 0
    first_token_at: float | None = None
    in_reasoning: bool = False

    def count(self, token_ids: Sequence[int], think_close_id: int | None) -> None:
        if token_ids and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.completion_tokens += len(token_ids)
        for token in token_ids:
            if not self.in_reasoning:
                break
            if token == think_close_id:
                self.in_reasoning = False
            else:
                self.reasoning_tokens += 1


class ChoiceRun:
    """Runs one choice on the engine loop: `await start()`, iterate `events()` once, then `close()`."""

    def __init__(self, loop: EngineLoop, plan: ChoicePlan) -> None:
        self.loop = loop
        self.plan = plan
        self.splitter = ReasoningSplitter(in_reasoning=plan.in_reasoning)
        self.tally = ChoiceTally(in_reasoning=plan.in_reasoning)
        self._generation: Generation | None = None
        self._budgeted = (
            plan.reasoning_budget is not None and plan.in_reasoning and plan.think_close_id is not None
        )

    async def start(self) -> None:
        """Submit the first engine request and wait for the engine to accept it (ValueError if not)."""
        params = self.plan.params
        if self._budgeted:
            assert self.plan.reasoning_budget is not None and self.plan.think_close_id is not None
            room = self.plan.max_model_len - len(self.plan.prompt_ids)
            params = dataclasses.replace(
                params,
                max_tokens=max(1, min(self.plan.reasoning_budget, room - 1)),
                stop_token_ids=[*params.stop_token_ids, self.plan.think_close_id],
            )
        await self._submit(self.plan.prompt_ids, params)

    def close(self) -> None:
        """Release the engine request in flight, if any (aborting it when unfinished)."""
        if self._generation is not None:
            self._generation.release()
            self._generation = None

    async def _submit(self, prompt_ids: list[int], params: SamplingParams) -> None:
        self.close()
        self._generation = self.loop.generate(prompt_ids, params)
        await self._generation.admitted()

    async def _deltas(self, count_cache: bool) -> AsyncIterator[Delta]:
        """The current engine request's deltas; the user prompt's prefix-cache hits are recorded."""
        assert self._generation is not None
        async for delta in self._generation.deltas():
            if delta.request_output is not None and count_cache:
                self.tally.cache_hit_tokens = delta.request_output.prompt_cache_hit_tokens
            yield delta
        self.close()

    def _event(self, delta: Delta, finish_reason: str | None = None) -> ChoiceEvent:
        self.tally.count(delta.token_ids, self.plan.think_close_id)
        split = self.splitter.feed(delta.text)
        return ChoiceEvent(split.reasoning, split.content, delta.token_ids, delta.logprobs, finish_reason)

    def _finish(self, reason: str | None) -> ChoiceEvent:
        tail = self.splitter.finish()
        api_reason = "length" if reason == "length" else "stop"  # the context's end is a length too
        return ChoiceEvent(reasoning=tail.reasoning, content=tail.content, finish_reason=api_reason)

    async def events(self) -> AsyncIterator[ChoiceEvent]:
        last: Delta | None = None
        async for delta in self._deltas(count_cache=True):
            last = delta
            yield self._event(delta)
        assert last is not None
        if self._budgeted:
            async for event in self._answer_after_budget(last):
                yield event
        else:
            yield self._finish(last.finish_reason)

    async def _answer_after_budget(self, last: Delta) -> AsyncIterator[ChoiceEvent]:
        """After the reasoning phase: close the reasoning if needed, then generate the answer."""
        plan = self.plan
        assert plan.reasoning_budget is not None and plan.think_close_id is not None and last.request_output
        generated = list(last.request_output.token_ids)
        closed = bool(generated) and generated[-1] == plan.think_close_id
        budget_reached = last.finish_reason == "length" and len(generated) >= plan.reasoning_budget
        if not (closed or budget_reached):
            yield self._finish(last.finish_reason)
            return
        if closed:
            if self.splitter.in_reasoning:  # the engine keeps a stop token's id but not its text
                yield ChoiceEvent(reasoning=self.splitter.feed(THINK_CLOSE).reasoning)
        else:
            forced = Delta(last.request_id, 0, [plan.think_close_id], THINK_CLOSE, None, None)
            generated.append(plan.think_close_id)
            event = self._event(forced)
            event.logprobs = [{plan.think_close_id: 0.0}] if plan.params.logprobs is not None else None
            yield event
        answer_prompt = plan.prompt_ids + generated
        answer_room = plan.max_model_len - len(answer_prompt)
        if answer_room < 1:
            yield self._finish("length")
            return
        await self._submit(
            answer_prompt,
            dataclasses.replace(plan.params, max_tokens=min(plan.params.max_tokens, answer_room)),
        )
        last_answer: Delta | None = None
        async for delta in self._deltas(count_cache=False):
            last_answer = delta
            yield self._event(delta)
        assert last_answer is not None
        yield self._finish(last_answer.finish_reason)
