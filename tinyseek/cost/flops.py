"""FLOPs per token for training and for decoding, from a config alone, term by term.

Design choices (each term is printed with its formula, so a reader can redo the arithmetic):
- A matmul with P weights costs 2·P FLOPs per token forward and 4·P backward, hence 6·P for training.
  P is the activated non-embedding parameter count (blocks + final norm; routed experts a token is not
  sent to excluded, the router's full gate included). The embedding is a lookup (0 FLOPs) but the output
  head is a vocab × hidden matmul, so it is its own term (also when the weights are tied).
- Attention over context (no weights): per layer, per token, forward, scores Q·Kᵀ cost
  2·heads·qk_head_dim·c and the weighted sum of V costs 2·heads·v_head_dim·c for c positions attended.
  In training, causal attention over a sequence of L tokens attends to (L+1)/2 positions on average
  (token i sees i positions), and training is 3× forward.
- MTP (training only): each depth runs its own activated parameters (enorm, hnorm, eh_proj, one block,
  norm) as matmuls, the shared head, and one layer of attention: 6·(P_mtp + vocab·hidden) + the
  attention term of one layer.
- Decode: 2·(activated non-embedding + head) per token plus attention over a context of C cached
  tokens. DeepSeek decodes with the absorbed MLA path, which attends over the latent: scores
  2·heads·(kv_lora_rank + qk_rope_head_dim)·C and output 2·heads·kv_lora_rank·C per layer (more
  arithmetic than the expanded 2·heads·(qk_head_dim + v_head_dim)·C, far fewer bytes read). The
  absorbed weight products cost the same 2·P as applying kv_b_proj, so the parameter term is unchanged.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from tinyseek.config import ModelConfig
from tinyseek.model_size import ModelSize


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return value


def head_params(cfg: ModelConfig) -> int:
    """Weights in the output projection as computed (vocab × hidden, tied or not)."""
    return cfg.vocab_size * cfg.hidden_size


def attention_flops_per_layer(cfg: ModelConfig, context: float) -> float:
    """Forward FLOPs of one token attending to `context` positions in one layer (expanded MLA)."""
    return 2 * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim) * context


def absorbed_attention_flops_per_layer(cfg: ModelConfig, context: float) -> float:
    """Forward FLOPs of one decode token over `context` cached latents in one layer (absorbed MLA)."""
    return 2 * cfg.num_attention_heads * (2 * cfg.kv_lora_rank + cfg.qk_rope_head_dim) * context


TRAINING_FORMULA = (
    "6·N_act_nonemb + 6·vocab·hidden + 6·heads·(qk_head_dim+v_head_dim)·(L+1)/2·layers"
    " + depths·[6·(N_mtp_act + vocab·hidden) + 6·heads·(qk_head_dim+v_head_dim)·(L+1)/2]"
)


DECODE_FORMULA = (
    "2·(N_act_nonemb + vocab·hidden) + 2·heads·(2·kv_lora_rank + qk_rope_head_dim)·C·layers"
    " (absorbed MLA; expanded would be 2·heads·(qk_head_dim+v_head_dim)·C·layers)"
)


@dataclass(frozen=True)
class FlopTerms(ABC):
    """FLOPs split into the terms of a formula; `as_dict` adds their total and the formula itself."""

    formula: ClassVar[str]

    @property
    @abstractmethod
    def total(self) -> float:
        """The sum of the terms the formula counts (each subclass says which)."""

    def as_dict(self) -> dict[str, float | str]:
        return {**dataclasses.asdict(self), "total": self.total, "formula": self.formula}


@dataclass(frozen=True)
class TrainingFlops(FlopTerms):
    """Training FLOPs per token (forward + backward), split into the terms of its formula."""

    formula = TRAINING_FORMULA
    seq_len: int
    mean_context: float  # (seq_len + 1) / 2: the positions a token attends to, on average
    matmul: float  # 6 x activated non-embedding parameters
    head: float
    attention: float
    mtp: float

    @property
    def total(self) -> float:
        return self.matmul + self.head + self.attention + self.mtp


def training_flops_per_token(cfg: ModelConfig, seq_len: int) -> TrainingFlops:
    """Forward + backward FLOPs for one trained token of a causal sequence of `seq_len` tokens."""
    _positive_int("seq_len", seq_len)
    size = ModelSize(cfg)
    context = (seq_len + 1) / 2
    attention_layer = 3 * attention_flops_per_layer(cfg, context)
    head = 6 * head_params(cfg)
    mtp_depth = 6 * size.mtp_module(activated=True) + head + attention_layer
    return TrainingFlops(
        seq_len=seq_len,
        mean_context=context,
        matmul=6 * size.activated_non_embedding,
        head=head,
        attention=attention_layer * cfg.num_hidden_layers,
        mtp=cfg.num_nextn_predict_layers * mtp_depth,
    )


@dataclass(frozen=True)
class DecodeFlops(FlopTerms):
    """FLOPs to decode one token with `context` tokens already cached (no MTP)."""

    formula = DECODE_FORMULA
    context: int
    weights: float
    attention_absorbed: float
    attention_expanded: float  # what MLA would cost without absorption, for comparison (not in total)

    @property
    def total(self) -> float:
        return self.weights + self.attention_absorbed


def decode_flops_per_token(cfg: ModelConfig, context: int) -> DecodeFlops:
    _positive_int("context", context)
    size = ModelSize(cfg)
    layers = cfg.num_hidden_layers
    return DecodeFlops(
        context=context,
        weights=2 * (size.activated_non_embedding + head_params(cfg)),
        attention_absorbed=absorbed_attention_flops_per_layer(cfg, context) * layers,
        attention_expanded=attention_flops_per_layer(cfg, context) * layers,
    )
