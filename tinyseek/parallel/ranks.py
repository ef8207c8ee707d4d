"""Work split over ranks and the results put back together: what rollouts and evaluation share.

Design choices:
- Work is split by its global index into contiguous, balanced blocks (`shard_range`), so which item a
  rank gets depends only on (n, rank, world) and gathering the blocks in rank order restores the
  global order: a merged result is laid out exactly as one process's.
- Results are exchanged as Python objects (`all_gather_object`): completions, rewards and scores are
  small next to the model, and every rank then holds the whole batch (advantages need whole groups,
  metrics need every sample) without a separate reduction per metric.
- Without a process group (one process) every function is the identity: the same code path runs.
"""

from __future__ import annotations

from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")


def rank_and_world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """This process's rank and the number of ranks; (0, 1) without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank `rank`'s contiguous block of `n` items: sizes differ by at most one, earlier ranks larger."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world {world}: expected 0 <= rank < world")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def gather_objects(value: T, group: dist.ProcessGroup | None = None) -> list[T]:
    """Every rank's `value`, in rank order, on every rank; `[value]` without a process group."""
    _, world = rank_and_world(group)
    if world == 1:
        return [value]
    out: list[T] = [value] * world  # placeholders, overwritten
    dist.all_gather_object(out, value, group=group)
    return out
