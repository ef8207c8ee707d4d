"""From a validated API request to engine work: sampling parameters, context limits, choice plans, usage.

Design choices:
- The prompt's length in characters is checked before tokenization (`check_prompt_chars`).
- Limits that depend on the model are checked here, after tokenization, with OpenAI's wording:
  a prompt that leaves no room for one completion token, or prompt + max_tokens beyond the context,
  is a 400 that states the limit and the counts. Without `max_tokens` a completion may use the rest
  of the context.
- With a reasoning budget the request needs prompt + budget + 1 (`</think>`) + max_tokens; a budget
  that comes from the server's default rather than the request is clipped to fit instead.
- The engine validates `SamplingParams` again; its ValueError (which names the parameter) becomes a 400.
- Usage counts the prompt once, however many choices; the cache counts are those of the first choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.serve.errors import APIError
from tinyseek.serve.generation import ChoicePlan, ChoiceTally
from tinyseek.serve.protocol import CompletionTokensDetails, PromptTokensDetails, Usage
from tinyseek.serve.state import Ready


def engine_params(
    *,
    max_tokens: int,
    temperature: float,
    top_p: float,
    stop: str | list[str] | None,
    logprobs: int | None,
) -> SamplingParams:
    try:
        return SamplingParams(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop, logprobs=logprobs
        )
    except ValueError as err:
        raise APIError(400, str(err), code="invalid_value") from err


def check_prompt_chars(total: int, limit: int, param: str) -> None:
    """The request's prompt text, all prompts or messages together, within the server's limit.

    Checked before tokenizing: characters bound the tokenizer's work, which is what an abusive
    request would make the server spend."""
    if total > limit:
        raise APIError(
            400,
            f"The prompt text is {total} characters in all; this server accepts at most {limit} "
            "characters per request. Please shorten the prompt.",
            param=param,
            code="prompt_too_long",
        )


def completion_room(
    prompt_len: int, max_model_len: int, max_tokens: int | None, prompt_param: str, reserved: int = 0
) -> int:
    """The max_tokens to run with; a 400 stating the context limit when the request cannot fit."""
    if prompt_len + reserved >= max_model_len:
        raise APIError(
            400,
            f"This model's maximum context length is {max_model_len} tokens, but the prompt has "
            f"{prompt_len} tokens{f' (+{reserved} reserved for reasoning)' if reserved else ''}; "
            "at least one completion token must fit. Please shorten the prompt.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    room = max_model_len - prompt_len - reserved
    if max_tokens is None:
        return room
    if max_tokens > room:
        raise APIError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_len + reserved + max_tokens} tokens ({prompt_len} in the prompt, "
            f"{f'{reserved} for the reasoning, ' if reserved else ''}{max_tokens} for the completion). "
            "Please reduce the prompt or max_tokens.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return max_tokens


def choice_plans(
    ready: Ready,
    prompt_ids: list[int],
    params: SamplingParams,
    n: int,
    seed: int | None,
    in_reasoning: bool = False,
    reasoning_budget: int | None = None,
) -> list[ChoicePlan]:
    """n plans for one prompt; choice i samples with seed + i when a seed is given."""
    return [
        ChoicePlan(
            prompt_ids=prompt_ids,
            params=dataclasses.replace(params, seed=None if seed is None else seed + i),
            max_model_len=ready.max_model_len,
            in_reasoning=in_reasoning,
            reasoning_budget=reasoning_budget,
            think_close_id=ready.think_close_id,
        )
        for i in range(n)
    ]


def build_usage(prompt_tokens: int, tallies: Sequence[ChoiceTally], cache_hit_tokens: int) -> Usage:
    completion = sum(t.completion_tokens for t in tallies)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cache_hit_tokens),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=sum(t.reasoning_tokens for t in tallies)
        ),
        prompt_cache_hit_tokens=cache_hit_tokens,
        prompt_cache_miss_tokens=prompt_tokens - cache_hit_tokens,
    )
