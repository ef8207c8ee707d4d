"""Multi-head Latent Attention (MLA), with its two paths.

Keys and values are compressed into a `kv_lora_rank` latent (normalized by kv_a_layernorm) plus one
rotated rope key shared by all heads. Two ways to attend, same result:
- expanded (training, and a prefill from position 0): kv_b_proj expands the latent to per-head k_nope
  and v, then SDPA (or, compiled on a CPU, the causal kernel of cpu_attention.py);
- absorbed (inference over a cache): W_UK is folded into the query and W_UV applied after attention,
  so attention runs directly over the cached latent; the cache holds kv_lora_rank + qk_rope_head_dim
  numbers per token per layer, nothing per head.
The cache is anything with `update(kv, pe, positions) -> latents` ([B, S, R + r]: each cached
token's latent, then its rope key) laid out so that a cached token's index equals its position; the
causal mask then follows from positions alone. One tensor, not two: the latent and the rope key are
scored by one batched matmul against the joined query, which reads the cache once (at batch 1,000
on a CPU it was twice as fast as two einsums over the two halves).

A prefill from position 0 (the cache's `starts_empty`, which the engine sets for chunks of 128 tokens
or more: the forward's tokens are each row's whole context) only stores its latents (`write`) and
attends expanded, as vLLM and SGLang prefill MLA: per query-key pair a head computes dn + dr + dv
products there against 2R + dr absorbed (160 against 288 at `small`, 320 against 1,088 at V3), and
expanding the chunk's keys costs what absorbing its queries and outputs would (R x H x (dn + dv) a
token either way). A compiled `small` engine on a CPU, one thread:
a 2,048-token prompt's prefill 3.6 s absorbed, 1.46 s expanded; 512 tokens 284 against 223 ms; 32
prompts of 32 tokens the same (378 against 375 ms).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tinyseek.config import ModelConfig
from tinyseek.model import cpu_attention
from tinyseek.model.norm import RMSNorm
from tinyseek.model.rope import apply_rope


class LatentStore(Protocol):
    @property
    def starts_empty(self) -> bool:
        """Every row of this forward starts at position 0 (nothing cached before it)."""
        ...

    def write(self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor) -> None:
        """Store latents kv [B, T, R] and rope keys pe [B, T, r] at `positions` [B, T], nothing else."""
        ...

    def update(
        self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor | list[tuple[slice, torch.Tensor]]:
        """Store latents kv [B, T, R] and rope keys pe [B, T, r] at `positions` [B, T]; return every
        cached latent and rope key of those rows side by side, [B, S, R + r], index = position; or,
        ragged, the same as groups of consecutive rows `(rows, latents [b, S_g, R + r])` whose S_g
        differ when the rows' contexts differ much in length."""
        ...


def attend_latents(
    q: torch.Tensor, latents: torch.Tensor, positions: torch.Tensor, softmax_scale: float, kv_lora_rank: int
) -> torch.Tensor:
    """Softmax attention of absorbed queries q [B, T*H, R + r] over latents [B, S, R + r], positions
    past each query's own masked; returns [B, T*H, R] in the latent space."""
    scores = torch.bmm(q, latents.transpose(1, 2))  # [B, T*H, S]
    future = torch.arange(latents.shape[1], device=q.device) > positions
    scores = (scores.float() * softmax_scale).masked_fill_(future, float("-inf"))
    probs = scores.softmax(dim=-1).to(latents.dtype)
    return torch.bmm(probs, latents[..., :kv_lora_rank])


def latent_attention(
    store: LatentStore,
    q: torch.Tensor,
    kv: torch.Tensor,
    pe: torch.Tensor,
    positions: torch.Tensor,
    softmax_scale: float,
) -> torch.Tensor:
    """The absorbed path's cache step: store kv [B, T, R] and pe [B, T, r] at `positions` [B, T], then
    attend the absorbed queries q [B, T*H, R + r] over every cached latent of their rows (group by
    group when the store is ragged); returns [B, T*H, R]."""
    return attend_cached(q, store.update(kv, pe, positions), positions, softmax_scale, kv.shape[-1])


def attend_cached(
    q: torch.Tensor,
    cached: torch.Tensor | list[tuple[slice, torch.Tensor]],
    positions: torch.Tensor,
    softmax_scale: float,
    kv_lora_rank: int,
) -> torch.Tensor:
    """`attend_latents` over what `LatentStore.update` returned: one tensor, or ragged groups of rows."""
    groups = [(slice(None), cached)] if isinstance(cached, torch.Tensor) else cached
    n_heads = q.shape[1] // positions.shape[1]
    q = q.to(groups[0][1].dtype)
    rows_positions = positions.repeat_interleave(n_heads, dim=1).unsqueeze(-1)  # [B, T*H, 1]
    if len(groups) == 1:
        return attend_latents(q, groups[0][1], rows_positions, softmax_scale, kv_lora_rank)
    out = q.new_empty(q.shape[0], q.shape[1], kv_lora_rank)
    for rows, latents in groups:
        out[rows] = attend_latents(q[rows], latents, rows_positions[rows], softmax_scale, kv_lora_rank)
    return out


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal SDPA of q, k [B, S, H, D] and v [B, S, H, Dv]; returns [B, S, H, Dv]. v is padded to the
    keys' width: equal head dims let SDPA take its fused (flash) kernels."""
    pad = q.shape[-1] - v.shape[-1]
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), F.pad(v, (0, pad)).transpose(1, 2), is_causal=True, scale=scale
    )
    return out.transpose(1, 2)[..., : v.shape[-1]]


class MLA(nn.Module):
    use_cpu_kernel = False  # the expanded path's C++ attention for fp32 CPU inputs (cpu_attention.enable)

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_attention_heads = config.num_attention_heads
        self.q_lora_rank = config.q_lora_rank
        self.kv_lora_rank = config.kv_lora_rank
        self.qk_nope_head_dim = config.qk_nope_head_dim
        self.qk_rope_head_dim = config.qk_rope_head_dim
        self.qk_head_dim = config.qk_head_dim
        self.v_head_dim = config.v_head_dim
        self.softmax_scale = config.softmax_scale
        q_dim = self.num_attention_heads * self.qk_head_dim
        if self.q_lora_rank is None:
            self.q_proj = nn.Linear(self.hidden_size, q_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(self.hidden_size, self.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank)
            self.q_b_proj = nn.Linear(self.q_lora_rank, q_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(
            self.hidden_size, self.kv_lora_rank + self.qk_rope_head_dim, bias=False
        )
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank)
        self.kv_b_proj = nn.Linear(
            self.kv_lora_rank,
            self.num_attention_heads * (self.qk_nope_head_dim + self.v_head_dim),
            bias=False,
        )
        self.o_proj = nn.Linear(self.num_attention_heads * self.v_head_dim, self.hidden_size, bias=False)

    def query(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head (q_nope [B,T,H,dn], rotated q_pe [B,T,H,dr])."""
        q = (
            self.q_proj(x)
            if self.q_lora_rank is None
            else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        )
        q = q.view(*x.shape[:2], self.num_attention_heads, self.qk_head_dim)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        return q_nope, apply_rope(q_pe, cos, sin)

    def latent(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the cache holds: normalized latent kv [B,T,R] and rotated shared rope key pe [B,T,dr]."""
        kv, pe = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, self.qk_rope_head_dim], dim=-1)
        return self.kv_a_layernorm(kv), apply_rope(pe, cos, sin)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentStore | None = None,
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        n_heads = self.num_attention_heads
        q_nope, q_pe = self.query(x, cos, sin)
        kv, pe = self.latent(x, cos, sin)
        if cache is not None and cache.starts_empty:  # a prefill from position 0 (module docstring)
            cache.write(kv, pe, positions)
            cache = None
        if cache is None:  # expanded: per-head keys and values, causal over this sequence
            k_nope, v = (
                self.kv_b_proj(kv)
                .view(bsz, seqlen, n_heads, -1)
                .split([self.qk_nope_head_dim, self.v_head_dim], -1)
            )
            q = torch.cat([q_nope, q_pe], dim=-1)
            k = torch.cat([k_nope, pe.unsqueeze(2).expand(-1, -1, n_heads, -1)], dim=-1)
            if self.use_cpu_kernel and q.is_cpu and q.dtype == torch.float32:
                out = cpu_attention.causal_attention(q, k, v, self.softmax_scale)
            else:
                out = causal_sdpa(q, k, v, self.softmax_scale)
        else:  # absorbed: attend over the cached latent directly
            w = self.kv_b_proj.weight.view(
                n_heads, self.qk_nope_head_dim + self.v_head_dim, self.kv_lora_rank
            )
            w_uk, w_uv = w[:, : self.qk_nope_head_dim], w[:, self.qk_nope_head_dim :]
            q_latent = torch.einsum("bthd,hdr->bthr", q_nope, w_uk)
            q = torch.cat([q_latent, q_pe], dim=-1).reshape(bsz, seqlen * n_heads, -1)
            # A store may take over the write, gather and attention (the engine's, to keep them one
            # opaque op under torch.compile); the result is the same.
            attend = getattr(cache, "attend", None)
            if attend is None:
                out = latent_attention(cache, q, kv, pe, positions, self.softmax_scale)
            else:
                out = attend(q, kv, pe, positions, self.softmax_scale)
            out = torch.einsum("bthr,hdr->bthd", out.view(bsz, seqlen, n_heads, -1), w_uv)
        return self.o_proj(out.reshape(bsz, seqlen, n_heads * self.v_head_dim))
