"""Inference memory: KV-cache bytes per token under three attention layouts, and what fits.

Design choices:
- The cache is counted in bf16 (2 bytes per number), as DeepSeek's reference inference keeps it,
  whatever precision the weights use.
- Three layouts of the same model, per token over all layers:
  latent (MLA, what tinyseek caches): (kv_lora_rank + qk_rope_head_dim)·layers·2;
  full per-head K/V (plain multi-head attention): heads·(qk_head_dim + v_head_dim)·layers·2;
  GQA-8: min(8, heads) KV heads·(qk_head_dim + v_head_dim)·layers·2.
- "Tokens that fit" is reported twice: all of the memory given to cache, and the memory left after
  the main model's weights (total parameters × bytes per weight at the chosen precision; MTP not
  loaded, FP8 block scales ignored). Memory is in GB = 10^9 bytes, as datasheets count it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tinyseek.config import ModelConfig
from tinyseek.cost.hardware import WEIGHT_BYTES
from tinyseek.model_size import ModelSize

CACHE_DTYPE_BYTES = 2
GQA_KV_HEADS = 8


def gqa_kv_bytes_per_token(cfg: ModelConfig, kv_heads: int = GQA_KV_HEADS, dtype_bytes: int = 2) -> int:
    """The same model with grouped-query attention: `kv_heads` (at most `heads`) K/V heads cached."""
    if kv_heads <= 0:
        raise ValueError(f"kv_heads={kv_heads}: expected a positive integer")
    heads = min(kv_heads, cfg.num_attention_heads)
    return heads * (cfg.qk_head_dim + cfg.v_head_dim) * cfg.num_hidden_layers * dtype_bytes


@dataclass(frozen=True)
class KVCacheBytes:
    latent: int
    full: int
    gqa8: int

    @property
    def full_over_latent(self) -> float:
        return self.full / self.latent

    @property
    def gqa8_over_latent(self) -> float:
        return self.gqa8 / self.latent

    def as_dict(self) -> dict[str, float]:
        return {
            "latent": self.latent,
            "full_per_head_kv": self.full,
            "gqa8": self.gqa8,
            "full_over_latent": self.full_over_latent,
            "gqa8_over_latent": self.gqa8_over_latent,
        }


def kv_cache_bytes_per_token(cfg: ModelConfig) -> KVCacheBytes:
    size = ModelSize(cfg)
    return KVCacheBytes(
        latent=size.latent_cache_bytes_per_token(CACHE_DTYPE_BYTES),
        full=size.full_kv_bytes_per_token(CACHE_DTYPE_BYTES),
        gqa8=gqa_kv_bytes_per_token(cfg, GQA_KV_HEADS, CACHE_DTYPE_BYTES),
    )


@dataclass(frozen=True)
class CacheFit:
    """Tokens of cache that fit in `memory_gb`, in all of it and in what the weights leave."""

    memory_gb: float
    weights_gb: float
    weight_precision: str
    tokens_in_memory: dict[str, int]
    tokens_after_weights: dict[str, int] | None

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def cache_fit(cfg: ModelConfig, memory_gb: float, precision: str = "bf16") -> CacheFit:
    if not (isinstance(memory_gb, int | float) and math.isfinite(memory_gb) and memory_gb > 0):
        raise ValueError(f"memory_gb={memory_gb!r}: expected a positive number of GB")
    if precision not in WEIGHT_BYTES:
        raise ValueError(f"precision={precision!r}: expected one of {tuple(WEIGHT_BYTES)}")
    per_token = kv_cache_bytes_per_token(cfg)
    layouts = {"latent": per_token.latent, "full_per_head_kv": per_token.full, "gqa8": per_token.gqa8}
    memory = memory_gb * 1e9
    weights = ModelSize(cfg).total * WEIGHT_BYTES[precision]
    left = memory - weights
    return CacheFit(
        memory_gb=memory_gb,
        weights_gb=weights / 1e9,
        weight_precision=precision,
        tokens_in_memory={k: int(memory // b) for k, b in layouts.items()},
        tokens_after_weights={k: int(left // b) for k, b in layouts.items()} if left > 0 else None,
    )
