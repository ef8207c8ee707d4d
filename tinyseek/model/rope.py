"""Rotary position embedding on the rope dims only, with YaRN for long context.

The released weights rotate interleaved pairs (x0, x1), (x2, x3), ...; we rotate the same pairs and
emit the result as [evens' | odds'] halves. Any fixed permutation applied to both q and k leaves
q·k unchanged, so this equals the released convention (and transformers' `rope_interleave=True`).
cos/sin come from a table of every position up to max_position_embeddings, computed once (V3's 163,840
positions: 42 MB, 0.14 s): computed per forward instead, inductor recomputed cos and sin inside every
layer's rope kernel, for each head; a lookup is one indexed load.
YaRN's `attention_factor` scales cos/sin; its mscale² on the softmax lives in ModelConfig.softmax_scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tinyseek.config import ModelConfig


def yarn_inv_freq(dim: int, theta: float, scaling: dict) -> tuple[torch.Tensor, float]:
    """YaRN: interpolate low frequencies by `factor`, keep high ones, ramp between β_slow and β_fast."""
    factor = float(scaling["factor"])
    original = scaling["original_max_position_embeddings"]
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(beta_fast)), 0)
    high: float = min(math.ceil(correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    base = theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolate = 1.0 - ramp
    inv_freq = (1.0 / (factor * base)) * (1 - extrapolate) + (1.0 / base) * extrapolate

    def mscale(scale: float, m: float) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if scaling.get("attention_factor") is not None:
        attention_factor = float(scaling["attention_factor"])
    elif scaling.get("mscale") and scaling.get("mscale_all_dim"):
        attention_factor = mscale(factor, scaling["mscale"]) / mscale(factor, scaling["mscale_all_dim"])
    else:
        attention_factor = mscale(factor, 1.0)
    return inv_freq, attention_factor


class RotaryEmbedding(nn.Module):
    """Turns positions [B, T] into (cos, sin) [B, T, rope_dim/2] shared by all layers."""

    table: torch.Tensor  # [max_position_embeddings, 2, rope_dim/2]: cos, sin

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.qk_rope_head_dim
        if config.rope_scaling and config.rope_scaling.get("type") == "yarn":
            inv_freq, self.attention_factor = yarn_inv_freq(dim, config.rope_theta, config.rope_scaling)
        else:
            inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            self.attention_factor = 1.0
        angles = torch.arange(config.max_position_embeddings, dtype=torch.float32)[:, None] * inv_freq
        table = torch.stack((angles.cos(), angles.sin()), dim=1) * self.attention_factor
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos_sin = self.table[positions]
        return cos_sin[..., 0, :], cos_sin[..., 1, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [B, T, (H,) D]; cos/sin [B, T, D/2]; output in halves layout."""
    if x.dim() == 4:
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
