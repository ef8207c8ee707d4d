"""DAPO dynamic sampling: keep only groups whose rewards differ, and refill the batch.

A group whose G rewards are all equal has zero advantage everywhere, so it adds no gradient (only KL,
when β > 0) while still costing a backward pass and diluting the per-batch means. DAPO drops such groups
and samples more prompts until the batch holds `target` informative groups.

Design choices:
- Rewards are compared exactly (`max == min`): rewards are sums of a few rule-based terms, and a
  tolerance would hide genuinely different outcomes.
- `fill_batch` is independent of the engine: it calls `draw(n)`, which samples and scores `n` new
  groups. Each refill round asks for the missing count divided by the share of informative groups seen
  so far (at most `target` groups per round), so a low share is compensated in one round rather than
  many small ones. Groups kept beyond `target` are dropped, keeping the step's batch size fixed.
- After `max_rounds` draws the batch may be short (or empty); the caller decides whether to train on it.
  A warning is logged so a run where nearly every group is solved (or failed) is visible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class ScoredGroup(Protocol):
    """Anything carrying the rewards of one prompt's G completions."""

    @property
    def rewards(self) -> Sequence[float]: ...


GroupT = TypeVar("GroupT", bound=ScoredGroup)


def is_informative(rewards: Sequence[float]) -> bool:
    """True when the group's rewards are not all equal (its advantages are not all zero)."""
    if not rewards:
        raise ValueError("a group needs at least one reward, got none")
    return max(rewards) != min(rewards)


def informative_groups(rewards: Sequence[float], group_size: int) -> list[int]:
    """Indices of the groups (rewards laid out group after group) whose rewards are not all equal."""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(
            f"group_size {group_size} must be >= 1 and divide the number of rewards ({len(rewards)})"
        )
    return [
        g
        for g in range(len(rewards) // group_size)
        if is_informative(rewards[g * group_size : (g + 1) * group_size])
    ]


@dataclass
class FilledBatch(Generic[GroupT]):
    """The informative groups kept (at most `target`) and what it took to get them."""

    groups: list[GroupT]
    target: int
    rounds: int
    drawn: int
    dropped: int = field(default=0)

    @property
    def full(self) -> bool:
        return len(self.groups) == self.target

    @property
    def informative_share(self) -> float:
        """Share of drawn groups whose rewards differed (the rest were dropped)."""
        return (self.drawn - self.dropped) / self.drawn if self.drawn else 0.0


def fill_batch(draw: Callable[[int], Sequence[GroupT]], target: int, max_rounds: int) -> FilledBatch[GroupT]:
    """Call `draw(n)` until `target` informative groups are kept or `max_rounds` draws were made."""
    if target < 1:
        raise ValueError(f"target must be >= 1 groups, got {target}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    kept: list[GroupT] = []
    drawn = dropped = rounds = 0
    while len(kept) < target and rounds < max_rounds:
        missing = target - len(kept)
        share = len(kept) / drawn if drawn else 1.0
        request = target if share == 0 else min(target, math.ceil(missing / share))
        batch = draw(request)
        rounds += 1
        drawn += len(batch)
        for group in batch:
            if is_informative(group.rewards):
                kept.append(group)
            else:
                dropped += 1
    if len(kept) < target:
        log.warning(
            "dynamic sampling kept %d of %d groups after %d rounds (%d of %d drawn groups had equal rewards)",
            len(kept),
            target,
            rounds,
            dropped,
            drawn,
        )
    return FilledBatch(groups=kept[:target], target=target, rounds=rounds, drawn=drawn, dropped=dropped)
