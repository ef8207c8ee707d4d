"""Paged latent attention for the CPU: a C++ kernel that attends straight over the latent pool.

The compiled decode forward (`Engine(compile=True)`) spent most of a large batch's step on the
attention's memory traffic: every layer gathered each row's context out of the pool (an
index_select of whole blocks) and then ran two batched matmuls over the copy. The kernel in
`csrc/paged_latent_attention.cpp` reads each row's latents where they lie, through its block table,
and stops at the row's own position, so there is no copy and no padding to the longest row.

Design choices:
- Built on first use with `torch.utils.cpp_extension.load` (ninja and the C++ compiler that
  torch.compile needs anyway), for this CPU (`-march=native`; the build's name holds a hash of the
  CPU's feature flags, so that a cache shared between machines never hands one CPU a binary built for
  another's instructions), then cached by torch (`TORCH_EXTENSIONS_DIR`); the first build takes ~30 s. Only compiled CPU engines use it: the eager engine, the tests of the
  model and the GPU path need no compiler.
- The ops' schemas and shapes are defined in Python (`paged_latent_attention` here, the engine's
  `write_attend_paged` beside its other cache ops in latent_cache.py), so torch.compile can trace them
  whether or not the kernel is built; the C++ file only registers their CPU implementations.
- Same mathematics as `tinyseek.model.attention.attend_latents` (fp32 scores and softmax); the
  additions run in another order (vectorized), so results agree to rounding, not bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "paged_latent_attention.cpp"

_lib = torch.library.Library("tinyseek", "FRAGMENT")
_lib.define(
    "paged_latent_attention(Tensor q, Tensor pool, Tensor table, Tensor positions, int block_size, "
    "float scale, int rank) -> Tensor"
)


@torch.library.register_fake("tinyseek::paged_latent_attention")
def _paged_fake(
    q: torch.Tensor, pool: torch.Tensor, table: torch.Tensor, positions: torch.Tensor, block_size: int,
    scale: float, rank: int,
) -> torch.Tensor:  # fmt: skip
    return q.new_empty(q.shape[0], q.shape[1], rank, dtype=pool.dtype)


def _cpu_features() -> str:
    """A short hash of this CPU's feature flags (what `-march=native` compiles for)."""
    flags = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


@functools.cache
def load() -> bool:
    """Build (first time) and load the CPU kernel; False, with the reason logged, where it cannot be
    built (no compiler or ninja): the compiled engine then gathers and attends as before."""
    isa = f"{torch.backends.cpu.get_cpu_capability().lower()}_{_cpu_features()}"
    try:
        from torch.utils.cpp_extension import load as load_extension

        load_extension(
            name=f"tinyseek_paged_attention_{isa}",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp-simd"],
            is_python_module=False,
        )
    except Exception as error:  # any build or load failure leaves the slower, portable path
        log.warning("paged latent attention kernel not built (%s): compiled decoding gathers instead", error)
        return False
    log.info("paged latent attention kernel loaded (%s)", isa)
    return True
