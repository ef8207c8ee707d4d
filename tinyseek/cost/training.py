"""Training bill: tokens × FLOPs per token against a GPU's peak, either way round.

Given an MFU (model FLOPs utilization), the GPU-hours follow:
    gpu_hours = tokens · flops_per_token / (peak · mfu) / 3600.
Given GPU-hours (a published bill), the MFU they imply follows from the same identity:
    mfu = tokens · flops_per_token / (gpu_hours · 3600 · peak).
Dollars are gpu_hours · price_per_gpu_hour in both cases. Exactly one of the two must be given; an
implied MFU above 1 means the inputs contradict each other and is an error, not a result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_PRICE_PER_GPU_HOUR = 2.0  # the DeepSeek-V3 report's H800 rental assumption


def check_positive(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}={value!r}: expected a positive finite number")


def check_price(price_per_gpu_hour: float) -> None:
    p = price_per_gpu_hour
    if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) or p < 0:
        raise ValueError(f"price_per_gpu_hour={p!r}: expected a finite number >= 0 (dollars per hour)")


@dataclass(frozen=True)
class TrainingCost:
    tokens: float
    flops_per_token: float
    total_flops: float
    peak_tflops: float
    mfu: float
    mfu_given: bool
    gpu_hours: float
    price_per_gpu_hour: float

    @property
    def dollars(self) -> float:
        return self.gpu_hours * self.price_per_gpu_hour

    def as_dict(self) -> dict[str, float | bool]:
        return {**asdict(self), "dollars": self.dollars}


def training_cost(
    tokens: float,
    flops_per_token: float,
    peak_tflops: float,
    *,
    mfu: float | None = None,
    gpu_hours: float | None = None,
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR,
) -> TrainingCost:
    """GPU-hours and dollars from an MFU, or the MFU implied by GPU-hours; exactly one of the two."""
    check_positive("tokens", tokens)
    check_positive("flops_per_token", flops_per_token)
    check_positive("peak_tflops", peak_tflops)
    check_price(price_per_gpu_hour)
    if (mfu is None) == (gpu_hours is None):
        raise ValueError(
            f"mfu={mfu!r}, gpu_hours={gpu_hours!r}: expected exactly one of mfu (to estimate GPU-hours) "
            "or gpu_hours (to imply the MFU)"
        )
    total = tokens * flops_per_token
    peak = peak_tflops * 1e12
    mfu_given = mfu is not None
    if mfu is not None:
        check_positive("mfu", mfu)
        if mfu > 1:
            raise ValueError(f"mfu={mfu!r}: expected a fraction in (0, 1] of the peak")
        gpu_hours = total / (peak * mfu) / 3600
    else:
        assert gpu_hours is not None
        check_positive("gpu_hours", gpu_hours)
        mfu = total / (gpu_hours * 3600 * peak)
        if mfu > 1:
            raise ValueError(
                f"gpu_hours={gpu_hours!r}: implies MFU {mfu:.2f} > 1 at {peak_tflops} TFLOP/s "
                "(too few hours for these tokens, or the wrong peak/precision)"
            )
    return TrainingCost(
        tokens=tokens,
        flops_per_token=flops_per_token,
        total_flops=total,
        peak_tflops=peak_tflops,
        mfu=mfu,
        mfu_given=mfu_given,
        gpu_hours=gpu_hours,
        price_per_gpu_hour=price_per_gpu_hour,
    )
