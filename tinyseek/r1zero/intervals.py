"""95% confidence intervals for the r1zero figures: across seeds, and by a per-problem bootstrap.

Design choices:
- Across seeds: Student's t interval of the mean (n seeds, n − 1 degrees of freedom). With 3 seeds it
  is wide (t = 4.30), which is the honest width of three runs; one seed has no interval (None).
- Per problem: a paired bootstrap of the base → RL gain. The base and the RL model answer the same
  problems, so resampling problems (with replacement) and recomputing the mean gain keeps each
  problem's pairing; with several seeds (each with its own problems) every seed is resampled
  within itself and the seeds' gains averaged, so the interval reflects the problems only.
- A plain mean (an arm's pass@1 on its problems, `tinyseek r1`) resamples problems the same way.
- Stdlib only (`random`, `statistics`): no SciPy for a table of t quantiles and a resampling loop.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence

# Two-sided 95% quantiles of Student's t by degrees of freedom (1-10); beyond, the normal's 1.96 is
# within 0.3 of the true value for n > 10.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
BOOTSTRAP_SAMPLES = 2000


def seed_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% t interval of the mean of `values` (one per seed); None for fewer than two."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return (mean - half, mean + half)


def bootstrap_gain(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of the mean gain `mean(rl) − mean(base)`, averaged over groups.

    `pairs` holds one (base, rl) pair of per-problem scores per seed, aligned problem by problem.
    """
    if not pairs:
        raise ValueError("bootstrap_gain needs at least one (base, rl) group")
    diffs = []
    for base, rl in pairs:
        if len(base) != len(rl) or not base:
            raise ValueError(f"per-problem scores of {len(base)} and {len(rl)} problems: expected equal, > 0")
        diffs.append([r - b for b, r in zip(base, rl, strict=True)])
    return _percentile_interval(diffs, samples, seed)


def bootstrap_mean(
    values: Sequence[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of the mean of per-problem `values` (resampling problems)."""
    if not values:
        raise ValueError("bootstrap_mean needs at least one value")
    return _percentile_interval([list(values)], samples, seed)


def _percentile_interval(groups: Sequence[Sequence[float]], samples: int, seed: int) -> tuple[float, float]:
    """Each group resampled within itself, the groups' means averaged; the 2.5% and 97.5% points."""
    rng = random.Random(seed)
    means = sorted(
        statistics.fmean(statistics.fmean(rng.choices(g, k=len(g))) for g in groups) for _ in range(samples)
    )
    return (means[int(0.025 * samples)], means[int(0.975 * samples) - 1])
