"""Expert load balancing: DeepSeek-V3's auxiliary-loss-free bias update and sequence-wise balance loss.

Design choices:
- `LoadCounter` adds up `MoE.tokens_per_expert` after every micro-batch forward, so the bias update of
  an optimizer step sees the load of the whole step (all micro-batches; all ranks when distributed).
- The update is V3's: `bias_e += γ · sign(mean_load − load_e)` on `Gate.e_score_correction_bias`, after
  the optimizer step; it moves selection only, never the gate weights the loss trains.
- The load statistic logged is the max violation, `max_e load_e / mean load − 1`: 0 is perfect balance.
- `sequence_balance_loss` is V3's complementary loss, per sequence:
  `α Σ_i f_i P_i` with `f_i = N_r / (K_r T) · #{t : i ∈ TopK(t)}` and `P_i = mean_t s_{i,t} / Σ_j s_{j,t}`;
  averaged over sequences, summed over MoE layers (MTP layers included).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from tinyseek.model.moe import MoE


def moe_layers(model: nn.Module) -> dict[str, MoE]:
    """Every MoE module by its module path (main layers and MTP blocks)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MoE)}


class LoadCounter:
    """Tokens routed to each expert of each MoE layer since the last `reset()`."""

    def __init__(self, model: nn.Module):
        self.layers = moe_layers(model)
        self.counts = {
            name: torch.zeros(m.n_routed_experts, dtype=torch.long) for name, m in self.layers.items()
        }

    def add(self) -> None:
        """Read the last forward's loads (call after each micro-batch forward)."""
        for name, moe in self.layers.items():
            self.counts[name] += moe.tokens_per_expert.to("cpu")

    def reset(self) -> None:
        for counts in self.counts.values():
            counts.zero_()

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> None:
        """Sum the loads over the data-parallel ranks (`group`), so every rank updates the bias alike."""
        if dist.is_available() and dist.is_initialized():
            for name, counts in self.counts.items():
                moe = self.layers[name]
                device = moe.gate.weight.device
                total = counts.to(device)
                dist.all_reduce(total, group=group)
                self.counts[name] = total.to("cpu")

    def max_violation(self) -> dict[str, float]:
        """max load / mean load − 1 per layer that routed tokens (MTP layers are idle when λ = 0)."""
        out = {}
        for name, counts in self.counts.items():
            mean = counts.float().mean()
            if mean > 0:
                out[name] = float(counts.max() / mean - 1)
        return out

    @torch.no_grad()
    def update_bias(self, rate: float) -> None:
        """V3's aux-loss-free update on every noaux_tc gate: raise under-loaded experts, lower the rest."""
        if rate == 0:
            return
        for name, moe in self.layers.items():
            bias = moe.gate.e_score_correction_bias
            if bias is None:
                continue
            load = self.counts[name].float()
            bias += rate * torch.sign(load.mean() - load).to(bias.device)


def sequence_balance_loss(model: nn.Module, alpha: float) -> torch.Tensor | None:
    """α·Σ_i f_i P_i averaged over the sequences of the last training forward, summed over layers."""
    total: torch.Tensor | None = None
    for moe in moe_layers(model).values():
        scores, indices = moe.route_scores, moe.route_indices
        if scores is None or indices is None:
            continue
        n_experts, top_k, seq = moe.n_routed_experts, moe.num_experts_per_tok, scores.shape[-2]
        chosen = torch.zeros_like(scores).scatter_(-1, indices, 1.0)  # [B, T, E]
        f = chosen.sum(dim=-2) * (n_experts / (top_k * seq))
        p = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=-2)
        layer = alpha * (f * p).sum(dim=-1).mean()
        total = layer if total is None else total + layer
    return total
