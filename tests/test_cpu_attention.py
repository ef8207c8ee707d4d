"""The C++ causal attention of compiled CPU training (tinyseek/model/cpu_attention.py): forward and
gradients equal float64 SDPA's, the op's registration passes opcheck, `prepare_model` turns it on for
`--compile` on a CPU, and a model attending with it trains as one attending with SDPA."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

from tests.fixtures import tiny_config
from tinyseek import Transformer
from tinyseek.model import cpu_attention
from tinyseek.model.attention import MLA
from tinyseek.train.config import TrainConfig
from tinyseek.train.trainer import prepare_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: compiled training attends with SDPA")
    assert cpu_attention.load(), "a C++ compiler is here but the CPU attention kernel did not build"


def inputs(batch: int, seq: int, heads: int, width: int, v_width: int) -> list[torch.Tensor]:
    """q, k [B, S, H, D] and v [B, S, H, Dv] a view with a row stride of its own (as the model's)."""
    q = torch.randn(batch, seq, heads, width, requires_grad=True)
    k = torch.randn(batch, seq, heads, width, requires_grad=True)
    kv = torch.randn(batch, seq, heads, width + v_width, requires_grad=True)
    return [q, k, kv]


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 1, 48, 32), (2, 70, 3, 48, 32), (1, 64, 2, 16, 16), (2, 65, 1, 24, 40), (1, 200, 2, 48, 32)],
    ids=["one-token", "rows-past-a-block", "one-block", "block-plus-one", "four-blocks"],
)
def test_forward_and_gradients_equal_float64_sdpa(shape: tuple[int, ...]) -> None:
    batch, seq, heads, width, v_width = shape
    q, k, kv = inputs(*shape)
    scale = width**-0.5
    out = cpu_attention.causal_attention(q, k, kv[..., width:], scale)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, kv)]
    rq, rk, rkv = ref_inputs
    ref = F.scaled_dot_product_attention(
        rq.transpose(1, 2), rk.transpose(1, 2), rkv[..., width:].transpose(1, 2), is_causal=True, scale=scale
    ).transpose(1, 2)
    ref.backward(grad.double())
    assert out.shape == (batch, seq, heads, v_width)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    for mine, theirs in zip((q, k, kv), ref_inputs, strict=True):
        assert torch.allclose(mine.grad.double(), theirs.grad, atol=1e-5)
    assert (kv.grad[..., :width] == 0).all()  # only the value half of the view gets gradients


def test_two_threads_give_one_threads_numbers() -> None:
    """Sequences and heads are split between threads (the build has OpenMP): every one is computed, as
    on one thread (to rounding: BLAS may pick other kernels inside a parallel region)."""
    q, k, kv = inputs(2, 70, 3, 48, 32)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out, lse = torch.ops.tinyseek.causal_attention(q, k, kv[..., 48:], 0.2)
        grads = torch.ops.tinyseek.causal_attention_backward(
            torch.ones_like(out), q, k, kv[..., 48:], out, lse, 0.2
        )
        results.append([out, lse, *grads])
    torch.set_num_threads(1)
    for one, two in zip(*results, strict=True):
        assert torch.allclose(one, two, atol=1e-5)


def test_op_passes_opcheck() -> None:
    """Compiled training traces the op through its fake kernels and autograd registration: opcheck
    checks them against the real op, with and without gradients."""
    for grad in (False, True):
        q, k, kv = inputs(2, 70, 3, 48, 32)
        args = (q.detach().requires_grad_(grad), k.detach().requires_grad_(grad), kv.detach()[..., 48:], 0.2)
        result = torch.library.opcheck(torch.ops.tinyseek.causal_attention.default, args)
        assert set(result.values()) == {"SUCCESS"}


def test_bad_inputs_are_named() -> None:
    q = torch.randn(1, 8, 2, 16)
    with pytest.raises(RuntimeError, match=r"expected fp32 CPU tensors, got q Double"):
        cpu_attention.causal_attention(q.double(), q.double(), q.double(), 0.25)
    with pytest.raises(RuntimeError, match=r"expected k \[1, 8, 2, D\], got \[1, 9, 2, 16\]"):
        cpu_attention.causal_attention(q, torch.randn(1, 9, 2, 16), q, 0.25)
    with pytest.raises(RuntimeError, match=r"q and k differ in width: 16 and 8"):
        cpu_attention.causal_attention(q, torch.randn(1, 8, 2, 8), q, 0.25)


def test_prepare_model_enables_it_for_compiled_cpu_training_only() -> None:
    model = Transformer(tiny_config())
    prepare_model(model, TrainConfig(out="unused"))
    assert not any(m.use_cpu_kernel for m in model.modules() if isinstance(m, MLA))
    prepare_model(model, TrainConfig(out="unused", compile=True))
    attention = [m for m in model.modules() if isinstance(m, MLA)]
    assert attention and all(m.use_cpu_kernel for m in attention)


def test_a_model_attending_with_it_has_sdpas_loss_and_gradients() -> None:
    sdpa = Transformer(tiny_config()).train()
    kernel = Transformer(tiny_config()).train()
    kernel.load_state_dict(sdpa.state_dict())
    assert cpu_attention.enable(kernel)
    ids = torch.randint(0, 96, (2, 80))
    losses = []
    for model in (sdpa, kernel):
        loss = F.cross_entropy(model(ids)[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    for a, b in zip(sdpa.parameters(), kernel.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-5)


@pytest.mark.slow  # compiles a block forward and backward: about a minute on a busy CPU
def test_a_compiled_block_with_it_is_one_graph_with_sdpas_gradients() -> None:
    model = Transformer(tiny_config()).train()
    block = model.layers[1]
    x = torch.randn(2, 80, 32, requires_grad=True)
    positions = torch.arange(80).expand(2, 80)
    cos, sin = model.rotary(positions)
    eager = block(x, cos, sin, positions)  # SDPA
    eager.square().mean().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    assert cpu_attention.enable(model)
    x2 = x.detach().clone().requires_grad_()
    backend = CompileCounterWithBackend("inductor")
    compiled = torch.compile(block, fullgraph=True, backend=backend)(x2, cos, sin, positions)
    compiled.square().mean().backward()
    ops = [str(node.target) for graph in backend.graphs for node in graph.graph.nodes]
    assert "tinyseek.causal_attention" in ops and not any("scaled_dot_product" in op for op in ops)
    assert torch.allclose(compiled, eager, atol=1e-5)
    assert torch.allclose(x2.grad, x.grad, atol=1e-5)
    for p, g in zip(block.parameters(), grads, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-5)
