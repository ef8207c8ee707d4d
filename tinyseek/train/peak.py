"""The peak FLOP/s that MFU is measured against, and MFU itself.

Design choices:
- GPUs: the dense bf16 datasheet peak from tinyseek.cost.hardware, found from the device name.
- CPUs have no datasheet peak, so one is measured once at start: the best of a few square matmuls in
  the training precision. It is what this machine's matmul reaches now, so MFU on a shared CPU is
  relative, not absolute.
- `precision="auto"` picks bf16 autocast on GPUs, and on CPUs only where bf16 matmul is faster than
  fp32: with AMX/AVX512-BF16 it is ~4x faster, but on an AVX2-only CPU it is emulated and ~15-30x
  slower (measured on an AVX2 AMD EPYC: 0.6 vs 8.5 GFLOP/s at 512²).
- FLOPs per token come from tinyseek.cost.flops.training_flops_per_token (6·N plus attention and MTP).
"""

from __future__ import annotations

import time

import torch

from tinyseek.config import ModelConfig
from tinyseek.cost.flops import training_flops_per_token
from tinyseek.cost.hardware import ACCELERATORS

PRECISIONS = ("auto", "bf16", "fp32")


def measure_cpu_peak(dtype: torch.dtype, size: int = 512, repeats: int = 3) -> float:
    """Best observed FLOP/s of a `size`² matmul in `dtype` on this CPU."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b  # warm up kernels and caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train under bf16 autocast (see the module docstring for "auto")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {PRECISIONS}")
    if precision != "auto":
        return precision == "bf16"
    if device.type != "cpu":
        return True
    return measure_cpu_peak(torch.bfloat16, 256, 2) > measure_cpu_peak(torch.float32, 256, 2)


def device_peak_flops(device: torch.device, bf16: bool) -> float | None:
    """Peak FLOP/s of `device` in the training precision; None when no peak is known (fp32 on GPUs)."""
    if device.type == "cpu":
        return measure_cpu_peak(torch.bfloat16 if bf16 else torch.float32)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower()
        for key, part in ACCELERATORS.items():
            if key != "cpu" and key in name and part.bf16_tflops:
                return part.bf16_tflops * 1e12 if bf16 else None
    return None


def flops_per_token(config: ModelConfig, seq_len: int, with_mtp: bool) -> float:
    """Training (forward + backward) FLOPs per token, the MTP term only when it is trained."""
    flops = training_flops_per_token(config, seq_len)
    return flops.total - (0.0 if with_mtp else flops.mtp)
