"""Model behaviour that has no transformers counterpart: absorbed decoding, MTP, layer patterns, dtypes."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import YARN, tiny_config
from tinyseek.inference.latent_cache import LatentCache
from tinyseek.model import moe as moe_module
from tinyseek.model.moe import MoE, grouped_linear
from tinyseek.model.transformer import Transformer


class RowCache:
    """The engine's LatentCache with row b's positions in consecutive slots (block 0 stays the sink)."""

    def __init__(self, config, batch_size: int, max_len: int, n_layers: int | None = None):
        self.row_slots = max_len
        self.cache = LatentCache(config, 1 + batch_size * max_len // 16, 16, n_layers=n_layers)

    def bind(self, rows: list[int], positions: torch.Tensor) -> LatentCache:
        """Where rows `rows` write `positions` [B, T] and read their context, for the next forward."""
        base = 16 + torch.tensor(rows)[:, None] * self.row_slots
        blocks = torch.arange(0, int(positions.max()) + 1, 16)
        self.cache.bind((base + positions).reshape(-1), [(slice(None), (base + blocks) // 16)])
        return self.cache


def at(start: int, batch: int, length: int) -> torch.Tensor:
    return torch.arange(start, start + length).expand(batch, length)


@pytest.mark.parametrize("overrides", [{}, {"q_lora_rank": None, "rope_scaling": YARN}])
def test_prefill_then_absorbed_decoding_equals_full_forward(overrides):
    model = Transformer(tiny_config(**overrides)).eval()
    x = torch.randint(0, 96, (3, 20))
    cache = RowCache(model.config, batch_size=3, max_len=32)
    rows = [0, 1, 2]
    with torch.no_grad():
        full = model(x)
        steps = [model(x[:, :9], cache=cache.bind(rows, at(0, 3, 9)))]
        for t in range(9, 20):
            positions = torch.full((3, 1), t)
            steps.append(model(x[:, t : t + 1], positions=positions, cache=cache.bind(rows, positions)))
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-4


def test_prefill_from_position_zero_runs_expanded_and_fills_the_cache_for_decoding():
    """`starts_empty` (the engine sets it when no row continues a cached prefix): the prefill attends
    over its own tokens, expanded, exactly as the cache-less forward does (bit for bit; the absorbed path
    agrees only to rounding), and stores the latents that absorbed decoding then reads."""
    model = Transformer(tiny_config()).eval()
    x = torch.randint(0, 96, (3, 20))
    cache = RowCache(model.config, batch_size=3, max_len=32)
    rows = [0, 1, 2]
    with torch.no_grad():
        full = model(x)
        bound = cache.bind(rows, at(0, 3, 9))
        bound.starts_empty = True
        prefill = model(x[:, :9], cache=bound)
        assert torch.equal(prefill, model(x[:, :9]))
        bound.starts_empty = False
        steps = [prefill]
        for t in range(9, 20):
            positions = torch.full((3, 1), t)
            steps.append(model(x[:, t : t + 1], positions=positions, cache=cache.bind(rows, positions)))
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-4


def test_ragged_positions_in_one_batch():
    """Rows at different positions decode together: each row equals its own full forward."""
    model = Transformer(tiny_config()).eval()
    a, b = torch.randint(0, 96, (1, 12)), torch.randint(0, 96, (1, 7))
    cache = RowCache(model.config, batch_size=2, max_len=32)
    with torch.no_grad():
        model(a[:, :11], cache=cache.bind([0], at(0, 1, 11)))
        model(b[:, :6], cache=cache.bind([1], at(0, 1, 6)))
        positions = torch.tensor([[11], [6]])
        step = model(
            torch.cat([a[:, 11:], b[:, 6:]]), positions=positions, cache=cache.bind([0, 1], positions)
        )
        want_a, want_b = model(a)[:, -1], model(b)[:, -1]
    assert torch.allclose(step[0, 0], want_a[0], atol=1e-4)
    assert torch.allclose(step[1, 0], want_b[0], atol=1e-4)


def test_positions_past_max_position_embeddings_are_a_clear_error():
    """rope's angles are a table of max_position_embeddings rows: a longer input names the limit, and
    the last position that fits still runs."""
    model = Transformer(tiny_config(max_position_embeddings=16)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 16, dtype=torch.long)).shape == (1, 16, 96)
        with pytest.raises(
            ValueError, match="input of 17 tokens: expected at most max_position_embeddings=16"
        ):
            model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("starts_empty", [False, True])  # the prefill absorbed, or expanded
def test_mtp_incremental_equals_full(starts_empty: bool):
    model = Transformer(tiny_config()).eval()
    x = torch.randint(0, 96, (2, 16))
    cache = RowCache(model.config, batch_size=2, max_len=32, n_layers=model.config.num_hidden_layers + 1)
    cache.cache.starts_empty = starts_empty
    with torch.no_grad():
        full = model.mtp_hidden_states(model.hidden_states(x), x)[0]
        h = model.hidden_states(x[:, :10], cache=cache.bind([0, 1], at(0, 2, 10)))
        first = model.mtp_hidden_states(h, x[:, :11], cache=cache.bind([0, 1], at(0, 2, 10)))[0]
    assert full.shape == (2, 15, 32) and first.shape == (2, 10, 32)
    assert torch.allclose(first, full[:, :10], atol=1e-5)


def test_moe_layer_freq_pattern():
    cfg = tiny_config(num_hidden_layers=8, first_k_dense_replace=1, moe_layer_freq=2)
    model = Transformer(cfg)
    kinds = ["moe" if isinstance(layer.mlp, MoE) else "dense" for layer in model.layers]
    assert kinds == ["dense", "dense", "moe", "dense", "moe", "dense", "moe", "dense"]
    assert isinstance(model.mtp[0].block.mlp, MoE)  # layer index 8 is even: MoE


def test_bf16_model_keeps_correction_bias_in_fp32():
    model = Transformer(tiny_config())
    gate = model.layers[1].mlp.gate
    gate.e_score_correction_bias.fill_(1e-3 + 1e-7)
    model = model.to_dtype(torch.bfloat16)
    assert gate.e_score_correction_bias.dtype == torch.float32
    assert gate.e_score_correction_bias[0].item() == pytest.approx(1e-3 + 1e-7, rel=1e-6)
    assert model.layers[1].mlp.experts.gate_up_proj.dtype == torch.bfloat16
    out = model(torch.randint(0, 96, (2, 8)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_correction_bias_changes_selection_not_weights():
    cfg = tiny_config(n_group=1, topk_group=1)
    gate = Transformer(cfg).layers[1].mlp.gate
    x = torch.randn(64, 32)
    w0, i0 = gate(x)
    gate.e_score_correction_bias[3] = 10.0  # expert 3 is now always chosen
    w1, i1 = gate(x)
    assert (i1 == 3).any(dim=1).all() and not (i0 == 3).any(dim=1).all()
    assert torch.allclose(w1.sum(-1), torch.full((64,), cfg.routed_scaling_factor))


def test_grouped_matmul_equals_per_expert_loop(monkeypatch):
    x = torch.randn(11, 16)
    w = torch.randn(4, 8, 16)
    offs = torch.tensor([3, 3, 8, 11], dtype=torch.int32)  # 3, 0, 5 and 3 rows
    fast = grouped_linear(x, w, offs)
    monkeypatch.setattr(moe_module, "_grouped_mm_works", lambda *_: False)
    slow = grouped_linear(x, w, offs)
    ref = torch.cat([x[:3] @ w[0].T, x[3:8] @ w[2].T, x[8:] @ w[3].T])
    assert torch.allclose(fast, ref, atol=1e-5) and torch.allclose(slow, ref, atol=1e-5)


def test_moe_backward_reaches_every_used_expert():
    model = Transformer(tiny_config())
    model(torch.randint(0, 96, (2, 16))).float().logsumexp(-1).mean().backward()
    moe = model.layers[1].mlp
    used = moe.tokens_per_expert > 0
    grads = moe.experts.gate_up_proj.grad.abs().sum(dim=(1, 2))
    assert (grads[used] > 0).all() and (grads[~used] == 0).all()
    assert moe.tokens_per_expert.sum().item() == 2 * 16 * 2


def test_grouped_linear_op_matches_eager_values_and_gradients():
    """The op torch.compile sees (forward and backward) equals the eager grouped matmul's autograd."""
    x = torch.randn(12, 16, requires_grad=True)
    w = torch.randn(3, 8, 16, requires_grad=True)
    offs = torch.tensor([4, 4, 12], dtype=torch.int32)  # 4, 0 and 8 rows
    grad = torch.randn(12, 8)
    eager = grouped_linear(x, w, offs)
    eager.backward(grad)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    op = moe_module._grouped_linear_op(x2, w2, offs)
    op.backward(grad)
    assert torch.allclose(op, eager, atol=1e-6)
    assert torch.allclose(x2.grad, x.grad, atol=1e-5) and torch.allclose(w2.grad, w.grad, atol=1e-5)
    assert (w2.grad[1] == 0).all()  # an expert without rows gets no gradient


def test_grouped_linear_ops_pass_opcheck():
    """Compiled code runs without inductor's size asserts (the engine's decode), so the ops' fake kernels
    must give the real outputs' shapes and strides: opcheck checks them, the schemas, the autograd
    registration and AOT dispatch, with and without gradients."""
    offs = torch.tensor([4, 4, 12], dtype=torch.int32)
    for grad in (False, True):
        x = torch.randn(12, 16, requires_grad=grad)
        w = torch.randn(3, 8, 16, requires_grad=grad)
        result = torch.library.opcheck(moe_module._grouped_linear_op, (x, w, offs))
        assert set(result.values()) == {"SUCCESS"}
    grad_out = torch.randn(12, 8)
    result = torch.library.opcheck(moe_module._grouped_weight_grad, (grad_out, torch.randn(12, 16), offs))
    assert set(result.values()) == {"SUCCESS"}


@pytest.mark.slow  # compiles a block forward and backward: about a minute on a busy CPU
def test_moe_block_compiles_as_one_graph_with_eager_gradients():
    model = Transformer(tiny_config()).train()
    block = model.layers[1]
    x = torch.randn(2, 16, 32, requires_grad=True)
    cos, sin = model.rotary(torch.arange(16).expand(2, 16))
    positions = torch.arange(16).expand(2, 16)
    eager = block(x, cos, sin, positions)
    eager.square().mean().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    x2 = x.detach().clone().requires_grad_()
    compiled = torch.compile(block, fullgraph=True)(x2, cos, sin, positions)  # fullgraph: no break
    compiled.square().mean().backward()
    assert torch.allclose(compiled, eager, atol=1e-5)
    assert torch.allclose(x2.grad, x.grad, atol=1e-5)
    for p, g in zip(block.parameters(), grads, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-5)
