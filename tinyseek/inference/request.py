"""What flows in and out of the engine: one Sequence per completion, Deltas per step, RequestOutputs.

Design choices:
- A request with `n` completions is `n` independent Sequences (own random stream, own cache blocks);
  they share the prompt's cache blocks through prefix caching, not through special cases.
- Outputs follow vLLM's shape (`RequestOutput.outputs[i].token_ids/text/finish_reason/logprobs`),
  and `RequestOutput.token_ids/text/finish_reason/logprobs` read the first completion, which is all
  most callers (n = 1) need.
- `StepTokens` is what the model runner returns for one sequence; the scheduler applies it.
- `Delta` is the streaming unit: the tokens and text one step added to one completion. The last Delta
  of a request carries the finished RequestOutput, so a consumer of deltas needs nothing else.
- `text_with_stop` puts back the stop string the detokenizer cut, for callers whose format includes it
  (the R1-Zero `</answer>`: evaluation and GRPO rollouts).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import torch

from tinyseek.inference.detokenizer import IncrementalDetokenizer
from tinyseek.inference.sampling_params import SamplingParams


@dataclass
class CompletionOutput:
    index: int
    token_ids: list[int]
    text: str
    finish_reason: str | None  # "stop", "length", "abort", or None while running
    logprobs: list[dict[int, float]] | None = None
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0


def text_with_stop(
    output: CompletionOutput, stops: Collection[str], eos_ids: set[int], tokenizer: Any
) -> str:
    """The completion as generated: the text with the stop string the engine cut put back.

    The engine keeps a stop string's tokens but cuts its text; a format check (`...</answer>`) and
    training on the text need it back. A completion that ended on EOS or length is returned as is.
    """
    text = output.text
    if output.finish_reason != "stop" or not stops or (output.token_ids and output.token_ids[-1] in eos_ids):
        return text
    rest = str(tokenizer.decode(output.token_ids, skip_special_tokens=True))[len(text) :]
    return text + next((stop for stop in stops if rest.startswith(stop)), "")


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    finished: bool

    @property
    def token_ids(self) -> list[int]:
        return self.outputs[0].token_ids

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def finish_reason(self) -> str | None:
        return self.outputs[0].finish_reason

    @property
    def logprobs(self) -> list[dict[int, float]] | None:
        return self.outputs[0].logprobs


@dataclass(slots=True)
class Delta:
    request_id: str
    index: int
    token_ids: list[int]
    text: str
    logprobs: list[dict[int, float]] | None
    finish_reason: str | None
    request_output: RequestOutput | None = None  # set on the request's last delta

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class StepTokens:
    """What the model runner computed for one sequence in one step (it changes no sequence itself):
    the new tokens, their logprob entries when asked, and with speculation the next draft."""

    tokens: list[int]
    logprobs: list[dict[int, float]] | None = None
    draft: int | None = None
    drafted: int = 0
    accepted: int = 0


@dataclass(eq=False, slots=True)
class Sequence:
    """One completion in flight. Latents of positions < num_computed are in the cache."""

    request_id: str
    index: int
    prompt: str | None
    prompt_len: int
    token_ids: list[int]  # prompt + generated so far
    params: SamplingParams
    generator: torch.Generator | None
    stream_text: bool = False
    blocks: list[int] = field(default_factory=list)
    row: int = -1  # row of the engine's block table while admitted
    num_computed: int = 0
    hit_tokens: int = 0
    block_keys: list[int] = field(default_factory=list)  # keys of the registered full blocks
    cache_generation: int = 0  # BlockManager.generation at admission
    draft: int | None = None  # speculative: the MTP's guess for the token after the last one
    logprobs: list[dict[int, float]] | None = None
    finish_reason: str | None = None
    text: str = ""
    detok: IncrementalDetokenizer | None = None  # when text is streamed or stop strings are watched
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.prompt_len :]

    @property
    def prefilling(self) -> bool:
        return self.num_computed < self.prompt_len

    def completion(self) -> CompletionOutput:
        return CompletionOutput(
            index=self.index,
            token_ids=self.output_ids,
            text=self.text,
            finish_reason=self.finish_reason,
            logprobs=self.logprobs,
            num_draft_tokens=self.num_draft_tokens,
            num_accepted_tokens=self.num_accepted_tokens,
        )
