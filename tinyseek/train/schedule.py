"""Learning-rate schedules: linear warmup, then cosine or WSD (warmup-stable-decay) to a floor.

Design choices:
- A schedule is a pure function of the step (`lr_factor`), wrapped in `LambdaLR`, so its checkpointed
  state is just the step count and a resumed run gets the same learning rates bit for bit.
- WSD holds the peak until the last `decay_fraction` of the run, then decays linearly: the schedule of
  MiniCPM and DeepSeek-V3's constant-then-decay phases, which lets a run be extended from any
  checkpoint of its stable phase.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "wsd")


def lr_factor(
    step: int, max_steps: int, warmup_steps: int, schedule: str, min_ratio: float, decay_fraction: float
) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_start = max(warmup_steps, int(max_steps * (1 - decay_fraction)))
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, max_steps - decay_start))
    return 1.0 - (1 - min_ratio) * progress


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    max_steps: int,
    warmup_steps: int,
    schedule: str,
    min_ratio: float,
    decay_fraction: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(0, max_steps, warmup_steps, schedule, min_ratio, decay_fraction)  # validate up front
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, max_steps, warmup_steps, schedule, min_ratio, decay_fraction),
    )
