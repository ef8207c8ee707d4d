"""GRPOConfig: every knob of the GRPO family of objectives, validated at construction.

Design choices:
- One dataclass covers GRPO (DeepSeekMath/R1), Dr. GRPO and DAPO: they differ only in a handful of
  fields, so `GRPOConfig.preset(name)` returns the published defaults of each and anything can still be
  overridden. The variants stay orthogonal knobs (aggregation, reward scaling, clip-higher, dynamic
  sampling, overlong shaping, truncation masking) rather than three code paths.
- `beta = 0` means no KL term and therefore no reference model to keep in memory (DAPO, Dr. GRPO and
  most recent recipes drop it).
- Overlong shaping is on when `overlong_cache > 0`; its L_max defaults to `max_new_tokens`, the length
  at which the engine truncates.
- `validate()` runs in `__post_init__` and raises a ValueError naming the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

LossType = Literal["grpo", "dr_grpo", "dapo"]
LOSS_TYPES: tuple[LossType, ...] = ("grpo", "dr_grpo", "dapo")

# Published defaults per variant; fields not named keep the dataclass defaults.
_PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeekMath / R1: sequence-mean aggregation, std-normalised advantages, symmetric clip.
    "grpo": {"loss_type": "grpo", "scale_rewards": True, "epsilon_low": 0.2, "epsilon_high": 0.2},
    # Dr. GRPO (Liu et al. 2025): no std division, constant normaliser (max_new_tokens x sequences).
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": False, "beta": 0.0},
    # DAPO (Yu et al. 2025): token-level mean, clip-higher, no KL, dynamic sampling, overlong shaping.
    "dapo": {
        "loss_type": "dapo",
        "epsilon_low": 0.2,
        "epsilon_high": 0.28,
        "beta": 0.0,
        "dynamic_sampling": True,
    },
}


@dataclass
class GRPOConfig:
    # Sampling: G completions per prompt, `prompts_per_step` prompts per optimisation step.
    group_size: int = 8
    prompts_per_step: int = 32
    temperature: float = 1.0  # of the rollouts (and of the log-probs the objective scores)
    top_p: float = 1.0
    max_new_tokens: int = 256
    # Objective.
    loss_type: LossType = "grpo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.0  # k3 KL coefficient; 0 keeps no reference model
    scale_rewards: bool = True
    advantage_eps: float = 1e-4
    mask_truncated: bool = False
    # Optimisation: `mu` inner iterations over each batch against the old-policy log-probs.
    mu: int = 1
    lr: float = 1e-6  # AdamW, constant after the run's warmup
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # DAPO dynamic sampling: drop zero-variance groups, refill for at most `max_sampling_rounds` rounds.
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 3
    # DAPO overlong shaping: 0 up to L_max - L_cache tokens, then linearly down to -1 at L_max.
    overlong_cache: int = 0
    overlong_max_len: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GRPOConfig:
        """The published defaults of `grpo`, `dr_grpo` or `dapo`, with overrides applied on top."""
        if name not in _PRESETS:
            raise ValueError(f"unknown GRPO preset {name!r}; expected one of {', '.join(_PRESETS)}")
        return cls(**{**_PRESETS[name], **overrides})

    @property
    def overlong_limit(self) -> int:
        """L_max of overlong shaping (defaults to the generation limit)."""
        return self.max_new_tokens if self.overlong_max_len is None else self.overlong_max_len

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"GRPOConfig.{name} = {getattr(self, name)!r}; expected {expected}")

        def finite(name: str) -> bool:
            value = getattr(self, name)
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        require(self.group_size >= 2, "group_size", "an integer >= 2 (advantages compare samples in a group)")
        require(self.prompts_per_step >= 1, "prompts_per_step", "an integer >= 1")
        require(finite("temperature") and self.temperature > 0, "temperature", "> 0 (RL needs sampling)")
        require(finite("top_p") and 0 < self.top_p <= 1, "top_p", "a number in (0, 1]")
        require(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1")
        require(self.loss_type in LOSS_TYPES, "loss_type", f"one of {', '.join(LOSS_TYPES)}")
        require(finite("epsilon_low") and 0 <= self.epsilon_low < 1, "epsilon_low", "a number in [0, 1)")
        require(finite("epsilon_high") and self.epsilon_high >= 0, "epsilon_high", "a number >= 0")
        require(finite("beta") and self.beta >= 0, "beta", "a number >= 0")
        require(finite("advantage_eps") and self.advantage_eps > 0, "advantage_eps", "a number > 0")
        require(self.mu >= 1, "mu", "an integer >= 1")
        require(finite("lr") and self.lr > 0, "lr", "a number > 0")
        require(finite("weight_decay") and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        require(finite("max_grad_norm") and self.max_grad_norm > 0, "max_grad_norm", "a number > 0")
        require(self.max_sampling_rounds >= 1, "max_sampling_rounds", "an integer >= 1")
        require(
            self.overlong_max_len is None or self.overlong_max_len >= 1,
            "overlong_max_len",
            "None (use max_new_tokens) or an integer >= 1",
        )
        require(
            0 <= self.overlong_cache <= self.overlong_limit,
            "overlong_cache",
            f"an integer in [0, {self.overlong_limit}] (0 disables overlong shaping; L_max = {self.overlong_limit})",
        )
