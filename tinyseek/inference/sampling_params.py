"""SamplingParams: what one request asks of the sampler, validated when it is built.

Design choices:
- Field names and defaults follow vLLM's `SamplingParams` (max_tokens 16, temperature 1.0, top_p 1.0,
  top_k off, min_p off), so code written for vLLM reads the same here. temperature 0 means greedy.
- `seed` makes one request reproducible whatever else shares its batch: the engine gives each seeded
  completion its own `torch.Generator` (completion i of an `n > 1` request uses seed + i).
- `logprobs=k` returns, per generated token, the sampled token's log-probability plus the k most
  likely ones, all from the model's raw distribution (before temperature and filtering), as vLLM does.
- Every bad value raises a ValueError that names the parameter and says what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1: off
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] | str | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    n: int = 1
    logprobs: int | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"SamplingParams.{name}={getattr(self, name)!r}: expected {expected}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_real(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(is_int(self.max_tokens) and self.max_tokens >= 1, "max_tokens", "an integer >= 1")
        need(is_real(self.temperature) and self.temperature >= 0, "temperature", "a number >= 0 (0 = greedy)")
        need(is_real(self.top_p) and 0 < self.top_p <= 1, "top_p", "a number in (0, 1]")
        need(is_int(self.top_k) and self.top_k >= -1, "top_k", "an integer >= 1, or 0 / -1 for off")
        need(is_real(self.min_p) and 0 <= self.min_p <= 1, "min_p", "a number in [0, 1]")
        need(self.seed is None or is_int(self.seed), "seed", "an integer or None")
        need(is_int(self.n) and self.n >= 1, "n", "an integer >= 1")
        need(
            self.logprobs is None or (is_int(self.logprobs) and self.logprobs >= 0),
            "logprobs",
            "None or an integer >= 0 (top alternatives per token)",
        )
        need(
            all(isinstance(s, str) and s for s in self.stop),  # type: ignore[union-attr]
            "stop",
            "a non-empty string or a list of non-empty strings",
        )
        need(
            all(is_int(t) and t >= 0 for t in self.stop_token_ids),
            "stop_token_ids",
            "a list of non-negative token ids",
        )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def stop_strings(self) -> list[str]:
        return list(self.stop or [])
