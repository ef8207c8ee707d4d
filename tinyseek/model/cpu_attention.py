"""Causal attention of compiled CPU training: a C++ forward and backward (csrc/causal_attention.cpp).

The expanded MLA path (training, no cache) otherwise calls SDPA, whose CPU flash kernel was over a
quarter of a compiled tiny training step (fp32, 8 × 256 tokens): at MLA's head dims it pads the values
to the keys' width and computes each query against the future keys of its block before masking them.
The kernel computes only the keys a block of queries may see, at the values' own width: forward and
backward in ~0.6 of SDPA's time at that shape (bench/causal_attention.py, one thread or two).

Design choices:
- Opt-in, per model: `enable(model)` builds the kernel (first time ~35 s; `tinyseek.cpu_extension`)
  and marks the model's attention modules; `prepare_model` does it for `--compile` on a CPU, as
  compiled engines use their decode kernels. Eager training (the demo) keeps SDPA.
- fp32 inputs only (bf16 autocast keeps SDPA); same mathematics as SDPA, additions in another order:
  results agree to rounding (~1e-6), not bit for bit.
- The ops' schemas, shapes and autograd are defined here, so torch.compile traces them; the C++ file
  only registers their CPU implementations.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import nn

from tinyseek import cpu_extension

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "causal_attention.cpp"

_lib = torch.library.Library("tinyseek", "FRAGMENT")
_lib.define("causal_attention(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor)")
_lib.define(
    "causal_attention_backward(Tensor grad, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
    "float scale) -> (Tensor, Tensor, Tensor)"
)


@torch.library.register_fake("tinyseek::causal_attention")
def _fake(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, seq, heads, _ = q.shape
    return q.new_empty(batch, seq, heads, v.shape[-1]), q.new_empty(batch, heads, seq)


@torch.library.register_fake("tinyseek::causal_attention_backward")
def _backward_fake(
    grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
    lse: torch.Tensor, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    return q.new_empty(q.shape), q.new_empty(k.shape), q.new_empty(v.shape)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    q, k, v, ctx.scale = inputs
    ctx.save_for_backward(q, k, v, *output)


def _backward(ctx, grad, grad_lse):  # type: ignore[no-untyped-def]
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.tinyseek.causal_attention_backward(grad, q, k, v, out, lse, ctx.scale)
    return dq, dk, dv, None


torch.library.register_autograd("tinyseek::causal_attention", _backward, setup_context=_setup)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax attention of q, k [B, S, H, D] and v [B, S, H, Dv] (last dimension contiguous), each
    query over the keys up to its own position; returns [B, S, H, Dv]."""
    return torch.ops.tinyseek.causal_attention(q, k, v, scale)[0]


@functools.cache
def load() -> bool:
    """Build (first time) and load the kernel; False, with the reason logged, where it cannot be built."""
    try:
        cpu_extension.build("tinyseek_causal_attention", [SOURCE], openmp=True)
    except Exception as error:  # any build or load failure leaves SDPA
        log.warning("CPU attention kernel not built (%s): training attends with SDPA", error)
        return False
    log.info("CPU attention kernel loaded")
    return True


def enable(model: nn.Module) -> bool:
    """Let `model`'s attention modules use the kernel for fp32 CPU inputs, once it is built; whether
    it is used."""
    from tinyseek.model.attention import MLA  # here: attention.py imports this module

    if not load():
        return False
    for module in model.modules():
        if isinstance(module, MLA):
            module.use_cpu_kernel = True
    return True
