"""Names of the per-step GRPO metrics the r1zero report reads from metrics.jsonl, in one place.

They are the keys `tinyseek.rl.run_grpo` logs: `reward/NAME/mean` for every reward of the run
(`tinyseek.rl.rewards.RewardScores.metrics`) and the rollout's length statistics
(`tinyseek.rl.grpo_trainer.rollout_metrics`). The self-checking share is a weight-0 reward named
`SELF_CHECK_REWARD` that the pipeline adds: it is logged like any reward but never changes the total.
"""

from __future__ import annotations

# The weight-0 reward whose mean is the step's self-checking share (tinyseek.r1zero.pipeline adds it).
SELF_CHECK_REWARD = "self_check"

# Mean accuracy reward (1 = verified correct) over the step's sampled completions.
ACCURACY = "reward/accuracy/mean"
# Mean total reward (weighted sum of the rewards), as the GRPO loop logs it.
REWARD = "reward/total/mean"
# Mean completion length in tokens over the step's sampled completions.
LENGTH = "completion_length/mean"
# Share of the step's sampled completions that check their own answer (`is_self_checking`).
SELF_CHECK = f"reward/{SELF_CHECK_REWARD}/mean"

# The curves the report draws, with their axis labels.
CURVES: dict[str, str] = {
    ACCURACY: "accuracy reward",
    REWARD: "total reward",
    LENGTH: "completion length (tokens)",
    SELF_CHECK: "self-checking share",
}
