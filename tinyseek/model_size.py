"""Parameter and KV-cache arithmetic from a config alone (no weights, so 671B costs nothing).

Counts follow the checkpoint tensors one by one, so `ModelSize(cfg).total` equals the number of
elements a tinyseek or transformers model of that config holds (a test checks it). "Activated" is what
one token touches: everything but the routed experts it is not sent to (embedding and head included,
as the DeepSeek-V3 report counts its 37B). MTP modules are counted apart, each with its own stored copy
of the embedding and head, as the released checkpoint stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyseek.config import ModelConfig


@dataclass(frozen=True)
class ModelSize:
    config: ModelConfig

    # ---- building blocks ----------------------------------------------------------------------
    @property
    def attention(self) -> int:
        c = self.config
        h = c.hidden_size
        if c.q_lora_rank is None:
            q = h * c.num_attention_heads * c.qk_head_dim
        else:
            q = h * c.q_lora_rank + c.q_lora_rank + c.q_lora_rank * c.num_attention_heads * c.qk_head_dim
        kv = (
            h * c.latent_dim
            + c.kv_lora_rank
            + c.kv_lora_rank * c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim)
        )
        return q + kv + c.num_attention_heads * c.v_head_dim * h

    @property
    def dense_mlp(self) -> int:
        return 3 * self.config.hidden_size * self.config.intermediate_size

    @property
    def expert(self) -> int:
        return 3 * self.config.hidden_size * self.config.moe_intermediate_size

    @property
    def gate(self) -> int:
        bias = 1 if self.config.topk_method == "noaux_tc" else 0  # e_score_correction_bias (V3 only)
        return self.config.n_routed_experts * (self.config.hidden_size + bias)

    def moe(self, activated: bool = False) -> int:
        c = self.config
        routed = c.num_experts_per_tok if activated else c.n_routed_experts
        return self.gate + (routed + c.n_shared_experts) * self.expert

    def block(self, layer: int, activated: bool = False) -> int:
        mlp = self.moe(activated) if self.config.is_moe_layer(layer) else self.dense_mlp
        return self.attention + mlp + 2 * self.config.hidden_size

    @property
    def embedding(self) -> int:
        return self.config.vocab_size * self.config.hidden_size

    @property
    def head(self) -> int:
        return 0 if self.config.tie_word_embeddings else self.embedding

    # ---- totals -------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Main model: embedding, blocks, final norm, head (MTP excluded)."""
        c = self.config
        blocks = sum(self.block(i) for i in range(c.num_hidden_layers))
        return self.embedding + blocks + c.hidden_size + self.head

    @property
    def activated(self) -> int:
        c = self.config
        blocks = sum(self.block(i, activated=True) for i in range(c.num_hidden_layers))
        return self.embedding + blocks + c.hidden_size + self.head

    @property
    def activated_non_embedding(self) -> int:
        return self.activated - self.embedding - self.head

    def mtp_module(self, activated: bool = False, with_copies: bool = False) -> int:
        """One MTP depth: enorm, hnorm, eh_proj, one block (MoE if the main model has MoE), final norm."""
        c = self.config
        h = c.hidden_size
        own = 2 * h + 2 * h * h + self.block(c.num_hidden_layers, activated) + h
        return own + (self.embedding + self.embedding if with_copies else 0)

    @property
    def mtp(self) -> int:
        return self.config.num_nextn_predict_layers * self.mtp_module()

    @property
    def mtp_stored(self) -> int:
        return self.config.num_nextn_predict_layers * self.mtp_module(with_copies=True)

    # ---- cache ----------------------------------------------------------------------------------
    def latent_cache_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        c = self.config
        return c.latent_dim * c.num_hidden_layers * dtype_bytes

    def full_kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """The same model caching per-head K (nope+rope) and V, as plain multi-head attention would."""
        c = self.config
        return c.num_attention_heads * (c.qk_head_dim + c.v_head_dim) * c.num_hidden_layers * dtype_bytes

    def as_dict(self, dtype_bytes: int = 2) -> dict[str, int | float]:
        latent = self.latent_cache_bytes_per_token(dtype_bytes)
        full = self.full_kv_bytes_per_token(dtype_bytes)
        return {
            "total": self.total,
            "activated": self.activated,
            "activated_non_embedding": self.activated_non_embedding,
            "embedding": self.embedding,
            "head": self.head,
            "mtp": self.mtp,
            "mtp_stored": self.mtp_stored,
            "latent_cache_bytes_per_token": latent,
            "full_kv_bytes_per_token": full,
            "kv_compression": full / latent,
        }
