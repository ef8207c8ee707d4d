"""Reinforcement learning with verifiable rewards: the GRPO objective family, rewards, dynamic sampling,
and the GRPO loop (`run_grpo(GRPORunConfig(...)) -> GRPOResult`; `GRPOTrainer` for step-level control)."""

from tinyseek.rl.config import LOSS_TYPES, GRPOConfig
from tinyseek.rl.dynamic_sampling import FilledBatch, fill_batch, informative_groups, is_informative
from tinyseek.rl.grpo_trainer import GRPOTrainer, StepResult
from tinyseek.rl.objective import (
    ObjectiveOutput,
    aggregate,
    group_advantages,
    grpo_loss,
    k3_kl,
    token_entropy,
    token_logprobs,
)
from tinyseek.rl.rewards import (
    BUILTIN_REWARDS,
    RewardFunction,
    RewardOptions,
    RewardScores,
    RewardSet,
    accuracy_reward,
    format_reward,
    language_reward,
    math_verify_score,
    overlong_penalty,
    overlong_reward,
    parse_reward_weights,
)
from tinyseek.rl.run import GRPOResult, GRPORunConfig, run_grpo

__all__ = [
    "BUILTIN_REWARDS",
    "LOSS_TYPES",
    "FilledBatch",
    "GRPOConfig",
    "GRPOResult",
    "GRPORunConfig",
    "GRPOTrainer",
    "ObjectiveOutput",
    "RewardFunction",
    "RewardOptions",
    "RewardScores",
    "RewardSet",
    "StepResult",
    "accuracy_reward",
    "aggregate",
    "fill_batch",
    "format_reward",
    "group_advantages",
    "grpo_loss",
    "informative_groups",
    "is_informative",
    "k3_kl",
    "language_reward",
    "math_verify_score",
    "overlong_penalty",
    "overlong_reward",
    "parse_reward_weights",
    "run_grpo",
    "token_entropy",
    "token_logprobs",
]
