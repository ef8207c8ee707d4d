"""`dtype="auto"`: the weight dtype that decodes faster on this machine, measured, not guessed.

Design choices:
- bf16 weights halve the bytes a decode step streams, but only pay where the hardware computes bf16
  natively: CUDA GPUs that support it, and CPUs with AVX-512 BF16 or AMX (flags `avx512_bf16`,
  `amx_bf16`). Elsewhere (AVX2) bf16 is emulated and several times slower: fp32, without measuring.
- On a CPU with native bf16 the answer still depends on the model's shapes and the batch (bf16 matrix
  -vector products were slower than fp32 on one such CPU, bf16 matrix products 3x faster), so both are
  timed: a decode-shaped forward (one token per row, `batch` rows) of the model itself and of a bf16
  copy, best of a few runs each; the faster wins and the timings are logged.
- bf16 outputs are not greedy-identical to fp32 ones (transformers in fp32, earlier runs): "auto" is a
  choice the caller makes; the default everywhere stays fp32.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch

from tinyseek.model.transformer import Transformer

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in NATIVE_BF16_FLAGS)


def _decode_seconds(model: Transformer, batch: int, repeats: int = 3) -> float:
    device = next(model.parameters()).device
    ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
    best = float("inf")
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first run warms up
            start = time.perf_counter()
            model(ids)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def pick_dtype(model: Transformer, batch: int) -> torch.dtype:
    """fp32 or bf16 for an fp32 `model` decoding `batch` rows at a time, on its device."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type != "cpu" or not cpu_has_native_bf16():
        return torch.float32
    bf16 = copy.deepcopy(model).to_dtype(torch.bfloat16)
    fp32_s, bf16_s = _decode_seconds(model, batch), _decode_seconds(bf16, batch)
    choice = torch.bfloat16 if bf16_s < fp32_s else torch.float32
    log.info(
        "dtype=auto: a decode forward at batch %d takes %.2f ms in fp32, %.2f ms in bf16: %s",
        batch, fp32_s * 1e3, bf16_s * 1e3, choice,
    )  # fmt: skip
    return choice
