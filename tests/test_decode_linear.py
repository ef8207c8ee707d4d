"""The compiled engine's few-row projections (tinyseek/inference/csrc/decode_linear.cpp): the kernels
equal x @ Wᵀ, per expert for the routed experts, and the graph pass that calls them rewrites the
Linears and experts of a compiled function, and only those whose weights it can read."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.fixtures import random_model
from tinyseek import LLM
from tinyseek.inference.cpu_kernels import DecodeLinears
from tinyseek.model.moe import Experts, swiglu_experts

pytestmark = pytest.mark.usefixtures("cpu_kernels_built")


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 27, 28, 32, 33, 48, 49, 64, 65])
@pytest.mark.parametrize("in_dim, out_dim", [(16, 4), (384, 100), (128, 12), (40, 8), (64, 10)])
def test_decode_linear_equals_x_times_w_transposed(rows: int, in_dim: int, out_dim: int):
    """Every row count around the kernel's limits (one row its own form; from 28 the broadcast form,
    in two to four vectors of rows; above 64 BLAS), widths that are whole vectors and ones that
    are not (in 40, out 10: BLAS), outputs that are not whole blocks of weight rows (100, 12, 4), a
    weight read in place."""
    gen = torch.Generator().manual_seed(rows)
    x, weight = torch.randn(rows, in_dim, generator=gen), torch.randn(out_dim, in_dim, generator=gen)
    got = torch.ops.tinyseek.decode_linear(x, weight)
    torch.testing.assert_close(got, x @ weight.T, atol=1e-4, rtol=1e-4)  # sums of 384 terms ~20


@pytest.mark.parametrize("rows", [1, 8, 32])
def test_decode_linear_splits_columns_over_two_threads(rows: int):
    """Two threads take a column range each, in each of the kernel's three forms."""
    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(rows, 384, generator=gen), torch.randn(204, 384, generator=gen)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = torch.ops.tinyseek.decode_linear(x, weight)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, x @ weight.T, atol=1e-4, rtol=1e-4)


def test_decode_linear_takes_any_layout_and_dtype():
    """A weight stored input-major, a non-contiguous x and bf16 all give x @ Wᵀ (through BLAS)."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 32, generator=gen)
    x = torch.randn(32, 8, generator=gen).T  # [8, 32], not contiguous
    input_major = weight.T.contiguous().T
    torch.testing.assert_close(torch.ops.tinyseek.decode_linear(x, input_major), x @ weight.T)
    torch.testing.assert_close(
        torch.ops.tinyseek.decode_linear(x, weight), x @ weight.T, atol=1e-5, rtol=1e-5
    )
    got = torch.ops.tinyseek.decode_linear(x.bfloat16(), weight.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), x @ weight.T, atol=0.1, rtol=0.05)


def test_decode_linear_rejects_mismatched_shapes():
    with pytest.raises(RuntimeError, match=r"weight: expected \[out, in\] with in = 32, got \[8, 16\]"):
        torch.ops.tinyseek.decode_linear(torch.zeros(4, 32), torch.zeros(8, 16))


def test_decode_grouped_linear_equals_each_experts_product():
    """Experts with no rows, one row, a few, enough for the broadcast form, and more than the kernel
    takes (BLAS), in one call."""
    gen = torch.Generator().manual_seed(0)
    counts = [0, 1, 7, 0, 60, 3, 30, 41, 70]
    weight = torch.randn(len(counts), 24, 64, generator=gen)
    x = torch.randn(sum(counts), 64, generator=gen)
    offs = torch.tensor(counts).cumsum(0).to(torch.int32)
    got = torch.ops.tinyseek.decode_grouped_linear(x, weight, offs)
    expected = torch.cat([rows @ weight[e].T for e, rows in enumerate(x.split(counts))])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 40, 70])
def test_the_ops_fake_kernels_match_them(rows: int):
    """A compiled engine runs without inductor's per-call size asserts (model_runner.py), so each op's
    fake kernel must give its real output's shape and strides: torch.library.opcheck checks that (and
    the schema, and the op under AOT dispatch with dynamic shapes) in each of the kernel's forms."""
    gen = torch.Generator().manual_seed(rows)
    x, weight = torch.randn(rows, 64, generator=gen), torch.randn(36, 64, generator=gen)
    experts = torch.randn(3, 36, 64, generator=gen)
    offs = torch.tensor([rows // 3, rows // 3, rows], dtype=torch.int32)
    for op, args in (
        (torch.ops.tinyseek.decode_linear.default, (x, weight)),
        (torch.ops.tinyseek.decode_grouped_linear.default, (x, experts, offs)),
    ):
        assert set(torch.library.opcheck(op, args).values()) == {"SUCCESS"}


def test_decode_grouped_linear_rejects_groups_that_do_not_cover_the_rows():
    weight, x = torch.zeros(2, 8, 16), torch.zeros(5, 16)
    with pytest.raises(RuntimeError, match="offs: expected the last end to be 5"):
        torch.ops.tinyseek.decode_grouped_linear(x, weight, torch.tensor([2, 4]))
    with pytest.raises(RuntimeError, match="non-decreasing ends within"):
        torch.ops.tinyseek.decode_grouped_linear(x, torch.zeros(3, 8, 16), torch.tensor([3, 1, 5]))


def compiled_with(pass_: DecodeLinears, fn, *args, dynamic: bool = False):  # type: ignore[no-untyped-def]
    torch._dynamo.reset()  # a fresh trace: no shape carried over from the previous compile
    options = {"post_grad_custom_post_pass": pass_, "fx_graph_cache": False}  # so the pass runs (and counts)
    return torch.compile(fn, dynamic=dynamic, fullgraph=True, options=options)(*args)


def test_the_pass_turns_row_major_linears_into_the_kernel():
    """Two Linears of row-major weights over 8 rows, or over one, are rewritten and give the eager
    result; with input-major weights (BLAS's NN layout) or in bf16, the graph is left as it was."""
    gen = torch.Generator().manual_seed(0)
    w1, w2 = torch.randn(64, 32, generator=gen), torch.randn(16, 64, generator=gen)

    def mlp(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        return F.linear(F.silu(F.linear(x, w1)), w2)

    x = torch.randn(8, 32, generator=gen)
    rewrite = DecodeLinears()
    with torch.inference_mode():
        torch.testing.assert_close(
            compiled_with(rewrite, mlp, x, w1, w2), mlp(x, w1, w2), atol=1e-5, rtol=1e-5
        )
        assert rewrite.replaced == 2
        one_row, input_major = DecodeLinears(), DecodeLinears()
        torch.testing.assert_close(
            compiled_with(one_row, mlp, x[:1], w1, w2), mlp(x[:1], w1, w2), atol=1e-5, rtol=1e-5
        )
        w1t, w2t = w1.T.contiguous().T, w2.T.contiguous().T
        torch.testing.assert_close(compiled_with(input_major, mlp, x, w1t, w2t), mlp(x, w1, w2))
        bf16 = DecodeLinears()  # the kernels are fp32: bf16 stays with BLAS
        compiled_with(bf16, mlp, x.bfloat16(), w1.bfloat16(), w2.bfloat16())
    assert one_row.replaced == 2
    assert input_major.replaced == 0 and bf16.replaced == 0


def test_the_pass_turns_a_linear_with_a_residual_add_into_the_kernel_and_the_add():
    """Inductor fuses `residual + linear(h, w)` into addmm(residual, h, wᵀ); the pass still gives it to the
    kernel, adding the residual after (the shared expert's down projection in a decode step)."""

    class Recording(DecodeLinears):
        def __call__(self, graph: torch.fx.Graph) -> None:
            self.targets = {node.target for node in graph.nodes}
            super().__call__(graph)

    gen = torch.Generator().manual_seed(0)
    residual, h, w = torch.randn(8, 16, generator=gen), torch.randn(8, 32, generator=gen), torch.randn(16, 32)

    def block(residual: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return residual + F.linear(h, w)

    rewrite = Recording()
    with torch.inference_mode():
        got = compiled_with(rewrite, block, residual, h, w)
    assert torch.ops.aten.addmm.default in rewrite.targets and rewrite.replaced == 1
    torch.testing.assert_close(got, block(residual, h, w), atol=1e-5, rtol=1e-5)


def test_the_pass_turns_the_routed_experts_into_the_grouped_kernel():
    gen = torch.Generator().manual_seed(0)
    experts = Experts(4, 32, 16)
    for weight in experts.parameters():
        weight.data = torch.randn(weight.shape, generator=gen) * 0.1
    x, counts = torch.randn(10, 32, generator=gen), torch.tensor([3, 0, 6, 1])
    rewrite = DecodeLinears()
    args = (x, experts.gate_up_proj, experts.down_proj, counts)
    with torch.inference_mode():
        got = compiled_with(rewrite, swiglu_experts, *args)
        torch.testing.assert_close(got, swiglu_experts(*args), atol=1e-5, rtol=1e-5)
    assert rewrite.replaced == 2


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != "AVX512", reason="the kernels run with AVX-512 only"
)
def test_a_compiled_engine_keeps_the_experts_row_major_for_the_kernel():
    """The layout the kernels read (engine.lay_out_for_decode): row-major experts for a compiled CPU
    engine, input-major (BLAS's NN product) for an eager one; values never change."""
    model = random_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    LLM(model, max_model_len=64)
    experts = next(m for m in model.modules() if isinstance(m, Experts))
    assert experts.gate_up_proj.transpose(1, 2).is_contiguous()
    LLM(model, max_model_len=64, compile=True)
    assert experts.gate_up_proj.is_contiguous() and experts.down_proj.is_contiguous()
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    LLM(model.to_dtype(torch.bfloat16), max_model_len=64, compile=True)  # the kernels are fp32: BLAS layout
    assert experts.gate_up_proj.transpose(1, 2).is_contiguous()


def test_compiled_engines_use_the_kernels_on_avx512_only(monkeypatch):
    """Built for AVX2, GCC lowers the kernels' 16-float vectors through memory (the projections read
    0.1-0.9 GB/s where BLAS read 4-5): there a compiled engine gathers, uses BLAS and keeps its layout."""
    model = random_model()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    llm = LLM(model, max_model_len=64, compile=True)
    assert not llm.engine.runner.cache.paged_kernel
    experts = next(m for m in model.modules() if isinstance(m, Experts))
    assert experts.gate_up_proj.transpose(1, 2).is_contiguous()  # input-major: BLAS's NN product
