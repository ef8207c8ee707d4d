"""DeepSeekMoE: shared experts plus fine-grained routed experts behind a Gate.

Design choices:
- Gate scores are computed in fp32 (as the references do); `e_score_correction_bias` (aux-loss-free
  balancing, V3) shifts only which experts are *selected*, never the weights. It is created fp32 and
  `Transformer.to_dtype` keeps it so (its updates are ~1e-3 and would vanish in bf16).
- Routed experts are stored stacked, `gate_up_proj [E, 2I, H]` and `down_proj [E, H, I]`, so one
  grouped matmul (`torch._grouped_mm`) serves all experts; tokens are sorted by expert first. A loop
  over the experts that received tokens is the fallback where grouped_mm is unsupported. Under
  torch.compile the grouped matmul (and its backward) is a custom op of known output shape and the
  per-expert counts a fixed-size scatter, so a compiled block is one graph, not three.
- `MoE.tokens_per_expert` keeps the last forward's load, which the trainer's bias balancing reads; in
  training mode, with autograd on, `MoE.route_scores`/`route_indices` keep the last forward's gate
  scores [B, T, E] and choices [B, T, k] (in the autograd graph) for the sequence-wise balance loss.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from tinyseek.config import ModelConfig


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)). Dense layers and shared experts."""

    def __init__(self, dim: int, inter_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, inter_dim, bias=False)
        self.up_proj = nn.Linear(dim, inter_dim, bias=False)
        self.down_proj = nn.Linear(inter_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """Routes each token to `num_experts_per_tok` experts; returns (weights fp32 [N,k], indices [N,k])."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_experts_per_tok = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.topk_method = config.topk_method
        self.scoring_func = config.scoring_func
        self.norm_topk_prob = config.norm_topk_prob
        self.routed_scaling_factor = config.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
        # Created fp32 whatever the default dtype (as DeepSeek-V3's Gate.bias); Transformer.to_dtype
        # leaves it fp32 when it casts the weights.
        self.e_score_correction_bias: torch.Tensor | None
        if config.topk_method == "noaux_tc":
            bias = torch.zeros(config.n_routed_experts, dtype=torch.float32)
            self.register_buffer("e_score_correction_bias", bias)
        else:
            self.e_score_correction_bias = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, indices, _ = self.route(x)
        return weights, indices

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weights, indices, scores): `scores` [N, E] are the unbiased affinities, for balance losses."""
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.sigmoid() if self.scoring_func == "sigmoid" else logits.softmax(dim=-1)
        choice = scores if self.e_score_correction_bias is None else scores + self.e_score_correction_bias
        if self.n_group > 1 and self.topk_method != "greedy":
            grouped = choice.view(x.shape[0], self.n_group, -1)
            group_score = (
                grouped.topk(2, dim=-1).values.sum(-1) if self.topk_method == "noaux_tc" else grouped.amax(-1)
            )
            kept = group_score.topk(self.topk_group, dim=-1).indices
            keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, kept, True)
            choice = grouped.masked_fill(~keep.unsqueeze(-1), float("-inf")).flatten(1)
        indices = choice.topk(self.num_experts_per_tok, dim=-1).indices
        weights = scores.gather(1, indices)
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.routed_scaling_factor, indices, scores


@functools.cache
def _grouped_mm_works(device_type: str, dtype: torch.dtype) -> bool:
    if not hasattr(torch, "_grouped_mm"):
        return False
    try:
        x = torch.ones(2, 8, device=device_type, dtype=dtype)
        w = torch.ones(2, 8, 8, device=device_type, dtype=dtype)
        torch._grouped_mm(
            x, w.transpose(-2, -1), offs=torch.tensor([1, 2], device=device_type, dtype=torch.int32)
        )
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _grouped(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Row group e of a (rows ending at offs[e]) times b[e]: [N, K] x [E, K, M] -> [N, M]."""
    if _grouped_mm_works(a.device.type, a.dtype):
        return torch._grouped_mm(a, b, offs=offs)
    out = a.new_empty(a.shape[0], b.shape[-1])
    start = 0
    for e, end in enumerate(offs.tolist()):
        if end > start:
            out[start:end] = a[start:end] @ b[e]
            start = end
    return out


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Rows of x sorted by expert (expert e's rows end at offs[e]) times weight[e]ᵀ, one call for all.

    Under torch.compile it is one opaque op of known output shape (grouped_mm's own meta kernel takes
    bf16 only, and the loop reads offs: either would break the graph); eager calls skip the custom
    op's dispatch, which costs more than a decode step's small matmul."""
    if torch.compiler.is_compiling():
        return _grouped_linear_op(x, weight, offs)
    return _grouped(x, weight.transpose(-2, -1), offs)


@torch.library.custom_op("tinyseek::grouped_linear", mutates_args=())
def _grouped_linear_op(x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return _grouped(x, weight.transpose(-2, -1), offs)


@_grouped_linear_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[1])


@torch.library.custom_op("tinyseek::grouped_weight_grad", mutates_args=())
def _grouped_weight_grad(grad: torch.Tensor, x: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Each expert's weight gradient [E, out, in]: its rows of grad, transposed, times its rows of x."""
    if _grouped_mm_works(grad.device.type, grad.dtype):
        return torch._grouped_mm(grad.t(), x, offs=offs)
    out = grad.new_zeros(offs.shape[0], grad.shape[1], x.shape[1])
    start = 0
    for e, end in enumerate(offs.tolist()):
        out[e] = grad[start:end].t() @ x[start:end]
        start = end
    return out


@_grouped_weight_grad.register_fake
def _(grad: torch.Tensor, x: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    return grad.new_empty(offs.shape[0], grad.shape[1], x.shape[1])


def _grouped_linear_setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    ctx.save_for_backward(*inputs)


def _grouped_linear_backward(ctx, grad):  # type: ignore[no-untyped-def]
    """Opaque ops again, so that a compiled backward does not trace grouped_mm either."""
    x, weight, offs = ctx.saved_tensors
    grad = grad.contiguous()  # grouped_mm rejects an expanded gradient (a sum's ones, strides 0)
    grad_x = _grouped_linear_op(grad, weight.transpose(-2, -1), offs) if ctx.needs_input_grad[0] else None
    grad_w = _grouped_weight_grad(grad, x, offs) if ctx.needs_input_grad[1] else None
    return grad_x, grad_w, None


_grouped_linear_op.register_autograd(_grouped_linear_backward, setup_context=_grouped_linear_setup)


class Experts(nn.Module):
    """All routed experts, stacked; computes tokens already sorted by expert."""

    def __init__(self, n_experts: int, dim: int, inter_dim: int):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(n_experts, 2 * inter_dim, dim))
        self.down_proj = nn.Parameter(torch.empty(n_experts, dim, inter_dim))

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return swiglu_experts(x, self.gate_up_proj, self.down_proj, counts)


def swiglu_experts(
    x: torch.Tensor, gate_up_proj: torch.Tensor, down_proj: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """SwiGLU of each expert on its rows (x sorted by expert); shared with expert-parallel wrappers."""
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    x = x.to(dtype)
    offs = counts.cumsum(0, dtype=torch.int32)
    gate, up = grouped_linear(x, gate_up_proj.to(dtype), offs).chunk(2, dim=-1)
    return grouped_linear(F.silu(gate) * up, down_proj.to(dtype), offs)


class MoE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_routed_experts = config.n_routed_experts
        self.num_experts_per_tok = config.num_experts_per_tok
        self.gate = Gate(config)
        self.experts = Experts(config.n_routed_experts, config.hidden_size, config.moe_intermediate_size)
        self.shared_experts: MLP | None = None
        if config.n_shared_experts:
            shared_width = config.n_shared_experts * config.moe_intermediate_size
            self.shared_experts = MLP(config.hidden_size, shared_width)
        self.tokens_per_expert = torch.zeros(config.n_routed_experts, dtype=torch.long)
        self.route_scores: torch.Tensor | None = None
        self.route_indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, indices, scores = self.gate.route(flat)
        # Kept for a loss, so only when one can be taken; grad mode first: a no-grad forward (the
        # engine's) then never reads `training`, and torch.compile guards nothing on it.
        if torch.is_grad_enabled() and self.training:
            self.route_scores = scores.view(*x.shape[:-1], -1)
            self.route_indices = indices.view(*x.shape[:-1], -1)
        chosen = indices.flatten()
        order = chosen.argsort(stable=True)  # (token, slot) pairs sorted by expert
        if torch.compiler.is_compiling():  # bincount's output size depends on the data: a graph break
            counts = chosen.new_zeros(self.n_routed_experts).index_add_(0, chosen, torch.ones_like(chosen))
        else:
            counts = torch.bincount(chosen, minlength=self.n_routed_experts)
        self.tokens_per_expert = counts
        token = order // self.num_experts_per_tok
        routed = self.experts(flat[token], counts)
        # Each token's weighted sum over its k experts (fp32, as the weights), added where the rows lie,
        # in expert order as transformers' loop over experts adds them: no gather back to token order.
        weighted = routed * weights.flatten()[order].unsqueeze(-1)
        out = weighted.new_zeros(flat.shape).index_add_(0, token, weighted).to(x.dtype)
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        return out.view_as(x)
