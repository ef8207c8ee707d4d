"""The CPU kernels of compiled decoding (`Engine(compile=True)`), built on first use.

Three costs of a compiled decode step on a CPU have a C++ kernel each in `csrc/`:
- attention (`paged_latent_attention.cpp`): every layer gathered each row's context out of the latent
  pool (an index_select of whole blocks) and ran two batched matmuls over the copy; the kernel reads
  each row's latents where they lie, through its block table, and stops at the row's own position;
- the projections of 1-64 rows (`decode_linear.cpp`): BLAS multiplies 8-32 rows by fp32 weights that
  come from memory at 3-6 GB/s (one row of row-major weights: 12-14); the kernel reads each weight row
  once, in place, with its loads requested ahead, for the dense layers, the head and, per expert, the
  routed experts;
- greedy decoding's argmax over the logits (`greedy_argmax.cpp`, the sampler's): at::max(dim) took
  1.1 ms for 32 rows of a 32,000-word vocabulary, the kernel 0.16 (one vectorized pass a row, the
  same first maximum); a 32-token `small` generate at batch 32, 0.96 of the time.

Design choices:
- Used on CPUs with AVX-512 only (`usable`), where they were measured. Their 16-float vectors are GCC
  vector extensions, which GCC lowers for AVX2 through memory: built for AVX2 (`-march=haswell`, run
  here) the projections' kernel read 0.1-0.9 GB/s of weights where BLAS read 4-5, and the attention op
  took 3.1 ms for 256 rows where the AVX-512 build took 0.33. Compiled engines on other CPUs gather and
  use BLAS, as without a compiler.
- Built for this CPU by `tinyseek.cpu_extension` (ninja and the C++ compiler that torch.compile needs
  anyway), then cached by torch; the first build takes ~30-40 s. Only compiled CPU engines use them:
  the eager engine, the model's tests and the GPU path need no compiler. Built without OpenMP, so their
  `at::parallel_for` runs on the calling thread: with it, a two-thread compiled decode step (tiny, batch
  256) took 8.6 / 9.7 ms against 9.3 without, within this machine's noise; measured at one thread only.
- The model code stays plain torch: `DecodeLinears`, a pass over the compiled graph, turns each
  `mm(x, weightᵀ)` (with its fused residual add, `addmm`) and each `tinyseek::grouped_linear` into the
  kernel's op. The kernels read weights [out, in] row-major, so an engine that uses them keeps that
  layout (engine.lay_out_for_decode).
- The ops' schemas and shapes are defined here (the engine's `write_attend_paged` beside its other
  cache ops in latent_cache.py), so torch.compile traces them whether or not the kernels are built;
  the C++ files only register CPU implementations. Inputs the kernels do not cover (other dtypes,
  more than 64 rows, widths that are not whole vectors) go to at::mm inside the op.
- Same mathematics as the eager forward; additions run in another order (vectorized), so results
  agree to rounding, not bit for bit.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

from tinyseek import cpu_extension

log = logging.getLogger(__name__)

SOURCES = [
    Path(__file__).parent / "csrc" / name
    for name in ("paged_latent_attention.cpp", "decode_linear.cpp", "greedy_argmax.cpp")
]
HEADER = Path(__file__).parent / "csrc" / "vector16.h"  # the 16-float vectors both sources include

_lib = torch.library.Library("tinyseek", "FRAGMENT")
_lib.define(
    "paged_latent_attention(Tensor q, Tensor pool, Tensor table, Tensor positions, int block_size, "
    "float scale, int rank) -> Tensor"
)
_lib.define("decode_linear(Tensor x, Tensor weight) -> Tensor")
_lib.define("decode_grouped_linear(Tensor x, Tensor weight, Tensor offs) -> Tensor")
_lib.define("greedy_argmax(Tensor logits) -> Tensor")


@torch.library.register_fake("tinyseek::paged_latent_attention")
def _paged_fake(
    q: torch.Tensor, pool: torch.Tensor, table: torch.Tensor, positions: torch.Tensor, block_size: int,
    scale: float, rank: int,
) -> torch.Tensor:  # fmt: skip
    return q.new_empty(q.shape[0], q.shape[1], rank, dtype=pool.dtype)


@torch.library.register_fake("tinyseek::decode_linear")
def _linear_fake(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.register_fake("tinyseek::decode_grouped_linear")
def _grouped_fake(x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[1])


@torch.library.register_fake("tinyseek::greedy_argmax")
def _argmax_fake(logits: torch.Tensor) -> torch.Tensor:
    return logits.new_empty(logits.shape[0], dtype=torch.long)


class DecodeLinears(CustomGraphPass):
    """Inductor post-grad pass: `mm(x, permute(w, [1, 0]))` (a Linear) becomes `decode_linear(x, w)`,
    `addmm(b, x, permute(w, [1, 0]))` `decode_linear(x, w) + b`, and `grouped_linear` (the routed
    experts) `decode_grouped_linear`, for fp32 weights (the kernels' dtype); `replaced` counts them."""

    def __init__(self) -> None:
        self.replaced = 0

    def __call__(self, graph: torch.fx.Graph) -> None:
        aten, tinyseek = torch.ops.aten, torch.ops.tinyseek
        for node in list(graph.nodes):
            if node.op != "call_function":
                continue
            bias = None
            if node.target is aten.mm.default and _row_major_linear(*node.args):
                target, args = tinyseek.decode_linear.default, (node.args[0], node.args[1].args[0])
            elif node.target is aten.addmm.default and not node.kwargs and _row_major_linear(*node.args[1:]):
                # bias + x @ wᵀ, as inductor fuses a residual add into the product (beta = alpha = 1)
                bias = node.args[0]
                target, args = tinyseek.decode_linear.default, (node.args[1], node.args[2].args[0])
            elif node.target is tinyseek.grouped_linear.default and _fp32(node.args[1]):
                target, args = tinyseek.decode_grouped_linear.default, node.args
            else:
                continue
            with graph.inserting_before(node):
                kernel = graph.call_function(target, args)
                kernel.meta = dict(node.meta)
                if bias is not None:
                    kernel = graph.call_function(aten.add.Tensor, (kernel, bias))
                    kernel.meta = dict(node.meta)
            node.replace_all_uses_with(kernel)
            graph.erase_node(node)
            self.replaced += 1
        graph.eliminate_dead_code()

    def uuid(self) -> bytes:  # compiled graphs are cached under this pass's source
        return get_hash_for_files((__file__,))


def _fp32(weight: object) -> bool:
    value = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
    return value is not None and value.dtype == torch.float32


def _row_major_linear(x: object, weight_t: object) -> bool:
    """mm(x, permute(w, [1, 0])) with w row-major [out, in] (the batch-1 graph's too: for one row the
    kernel streams row-major weights faster than BLAS's matrix-vector product)."""
    if not (isinstance(x, torch.fx.Node) and isinstance(weight_t, torch.fx.Node)):
        return False
    weight, dims = weight_t.args[0], weight_t.args[1]
    if weight_t.target is not torch.ops.aten.permute.default or not isinstance(weight, torch.fx.Node):
        return False
    if dims not in ([1, 0], (1, 0)) or not _fp32(weight):  # the kernels' dtype
        return False
    return bool(weight.meta["val"].is_contiguous())


def usable() -> bool:
    """Whether a compiled CPU engine uses the kernels: on a CPU with AVX-512, once they are built."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX512":
        log.info(
            "CPU decode kernels not used on %s (AVX-512 only): compiled decoding gathers and uses BLAS",
            capability,
        )
        return False
    return load()


@functools.cache
def load() -> bool:
    """Build (first time) and load the CPU kernels; False, with the reason logged, where they cannot be
    built (no compiler or ninja): the compiled engine then gathers, attends and multiplies as before."""
    try:
        # torch rebuilds when a source or a flag changes, not a header: the header's hash is a flag.
        cpu_extension.build(
            "tinyseek_cpu_kernels", SOURCES, [cpu_extension.header_flag("TINYSEEK_VECTOR16", HEADER)]
        )
    except Exception as error:  # any build or load failure leaves the slower, portable path
        log.warning(
            "CPU decode kernels not built (%s): compiled decoding gathers and uses BLAS instead", error
        )
        return False
    log.info("CPU decode kernels loaded")
    return True
