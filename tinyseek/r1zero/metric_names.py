"""Names of the per-step GRPO metrics the r1zero report reads from metrics.jsonl, in one place.

The GRPO loop logs them with `tinyseek.train.metrics.MetricsLogger` and the report plots them, so
both sides import these constants instead of spelling the strings twice.
"""

from __future__ import annotations

# Mean accuracy reward (1 = verified correct) over the step's sampled completions.
ACCURACY = "reward/accuracy/mean"
# Mean total reward (accuracy plus any shaping terms), when the loop logs it.
REWARD = "reward/mean"
# Mean completion length in tokens over the step's sampled completions.
LENGTH = "completion/length_mean"
# Share of the step's sampled completions that check their own answer (`is_self_checking`).
SELF_CHECK = "self_check_share"

# The curves the report draws, with their axis labels.
CURVES: dict[str, str] = {
    ACCURACY: "accuracy reward",
    REWARD: "total reward",
    LENGTH: "completion length (tokens)",
    SELF_CHECK: "self-checking share",
}
