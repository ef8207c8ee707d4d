"""Decode roofline: the fastest one decode step can run, from the config and two machine numbers.

Design choices (each term is arithmetic a reader can redo):
- Bytes per step: a step streams its weights once whatever the batch: every weight of the blocks,
  the final norm and the head, but of the routed experts only those at least one token of the batch is
  sent to — with uniform routing E·(1 − (1 − k/E)^B) of E per MoE layer —, and B rows of the
  embedding; plus each sequence's cached latents ((kv_lora_rank + qk_rope_head_dim) × layers per
  cached token) read once. Activations are small next to these and left out.
- FLOPs per step: B × `decode_flops_per_token(config, context)` (absorbed MLA).
- The roofline time of a step is max(bytes / bandwidth, FLOPs / peak); a measured step's share of
  the roofline is roofline time / measured time (1.0 would be at the roofline).
- That max assumes the arithmetic hides entirely under the memory stream. `serial_seconds` is the
  sum, the step with no overlap at all: a core that overlaps part of the two lands between them, and
  a step faster than the sum shows that it overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyseek.config import ModelConfig
from tinyseek.cost.flops import decode_flops_per_token, head_params
from tinyseek.model_size import ModelSize


def experts_touched(cfg: ModelConfig, batch: int) -> float:
    """Expected routed experts per MoE layer that receive at least one of `batch` tokens."""
    e, k = cfg.n_routed_experts, cfg.num_experts_per_tok
    return e * (1 - (1 - k / e) ** batch) if e else 0.0


@dataclass(frozen=True)
class DecodeRoofline:
    """One decode step of `batch` sequences with `context` cached tokens each."""

    batch: int
    context: int
    weight_bytes: float
    cache_bytes: float
    flops: float

    @property
    def bytes(self) -> float:
        return self.weight_bytes + self.cache_bytes

    def seconds(self, bandwidth_bytes_s: float, peak_flops_s: float) -> float:
        """The step's lower bound on a machine with this bandwidth and matmul peak."""
        return max(self.bytes / bandwidth_bytes_s, self.flops / peak_flops_s)

    def serial_seconds(self, bandwidth_bytes_s: float, peak_flops_s: float) -> float:
        """The step with its memory traffic and arithmetic one after the other (no overlap)."""
        return self.bytes / bandwidth_bytes_s + self.flops / peak_flops_s

    def tokens_per_s(self, bandwidth_bytes_s: float, peak_flops_s: float) -> float:
        return self.batch / self.seconds(bandwidth_bytes_s, peak_flops_s)

    def bound(self, bandwidth_bytes_s: float, peak_flops_s: float) -> str:
        """Which roof holds: "memory" or "compute"."""
        return "memory" if self.bytes / bandwidth_bytes_s >= self.flops / peak_flops_s else "compute"


def decode_roofline(cfg: ModelConfig, batch: int, context: int, dtype_bytes: int = 4) -> DecodeRoofline:
    size = ModelSize(cfg)
    moe_layers = sum(cfg.is_moe_layer(i) for i in range(cfg.num_hidden_layers))
    untouched = moe_layers * (cfg.n_routed_experts - experts_touched(cfg, batch)) * size.expert
    weights = size.total - size.embedding - untouched + batch * cfg.hidden_size
    if cfg.tie_word_embeddings:
        weights += size.embedding  # the head reads the whole (shared) matrix
    cache = batch * context * cfg.latent_dim * cfg.num_hidden_layers
    flops = batch * decode_flops_per_token(cfg, max(context, 1)).total
    return DecodeRoofline(batch, context, weights * dtype_bytes, cache * dtype_bytes, flops)


def generation_seconds(
    cfg: ModelConfig,
    batch: int,
    prompt_len: int,
    new_tokens: int,
    bandwidth_bytes_s: float,
    peak_flops_s: float,
    dtype_bytes: int = 4,
) -> float:
    """Lower bound of a whole `generate` call: its prefill, then new_tokens − 1 decode steps at the
    mean context, each at its roofline."""
    prefill = prefill_seconds(cfg, batch, prompt_len, bandwidth_bytes_s, peak_flops_s, dtype_bytes)
    step = decode_roofline(cfg, batch, prompt_len + new_tokens // 2, dtype_bytes)
    return prefill + (new_tokens - 1) * step.seconds(bandwidth_bytes_s, peak_flops_s)


def prefill_seconds(
    cfg: ModelConfig,
    batch: int,
    prompt_len: int,
    bandwidth_bytes_s: float,
    peak_flops_s: float,
    dtype_bytes: int = 4,
) -> float:
    """Lower bound of the prefill of batch × prompt_len tokens: weights read once, each token attending
    to prompt_len / 2 positions on average, the head run only at each sequence's last position (where
    its first token is sampled)."""
    prefill = decode_roofline(cfg, batch * prompt_len, max(prompt_len // 2, 1), dtype_bytes)
    no_logits = 2 * head_params(cfg) * batch * (prompt_len - 1)  # prompt positions that sample nothing
    return max(prefill.weight_bytes / bandwidth_bytes_s, (prefill.flops - no_logits) / peak_flops_s)
