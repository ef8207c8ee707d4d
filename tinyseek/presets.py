"""Named model sizes: the released DeepSeek models, laptop-sized ones, and one labelled what-if.

`tiny` trains on a 2-core CPU in minutes; `mini` (~24M) and `small` (~90M parameters) are the
benchmark sizes; `r2-hybrid` is NOT a released model: a what-if sizing of the rumoured ~1.2T-parameter DeepSeek-R2,
hybrid MoE/dense (MoE and dense layers interleaved through moe_layer_freq=2), for cost studies only.
"""

from __future__ import annotations

from typing import Any

_V3_YARN = {
    "type": "yarn",
    "factor": 40.0,
    "original_max_position_embeddings": 4096,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}

# DeepSeek-V3's architecture at the sizes a CPU trains, one column each so they compare at a glance;
# every field not listed is V3's. tiny: ~1.7M parameters with a ~100-token vocabulary; mini: the
# engine check, ~24M; small: ~90M.
_CPU_SIZES = ("tiny", "mini", "small")
# fmt: off
_CPU_FIELDS: dict[str, tuple[Any, ...]] = {
    #                           tiny   mini  small
    "vocab_size":              ( 512, 10240, 32000),
    "hidden_size":             ( 128,   384,   512),
    "num_hidden_layers":       (   4,     6,     8),
    "num_attention_heads":     (   4,     6,     8),
    "q_lora_rank":             (  64,   128,   192),
    "kv_lora_rank":            (  32,    96,   128),
    "qk_nope_head_dim":        (  32,    64,    64),
    "qk_rope_head_dim":        (  16,    32,    32),
    "v_head_dim":              (  32,    64,    64),
    "intermediate_size":       ( 384,  1024,  1536),
    "moe_intermediate_size":   ( 128,   128,   256),
    "n_routed_experts":        (   8,    16,    16),
    "num_experts_per_tok":     (   2,     4,     4),
    "n_group":                 (   2,     4,     4),
    "topk_group":              (   2,     2,     2),
    "max_position_embeddings": (1024,  2048,  4096),
    "first_k_dense_replace":   (   1,     1,     1),
    "initializer_range":       (0.02,  0.02,  0.02),
}
# fmt: on


def _cpu_size(name: str) -> dict[str, Any]:
    """One column of the table above."""
    column = _CPU_SIZES.index(name)
    return {field: values[column] for field, values in _CPU_FIELDS.items()}


PRESETS: dict[str, dict[str, Any]] = {
    # DeepSeek-V3 / R1 (671B total, 37B active), as in the released config.json.
    "deepseek-v3": dict(rope_scaling=_V3_YARN),
    # DeepSeek-V2-Lite (15.7B total, 2.4B active): softmax routing, no q compression, no MTP.
    "deepseek-v2-lite": dict(
        vocab_size=102400,
        hidden_size=2048,
        num_hidden_layers=27,
        num_attention_heads=16,
        q_lora_rank=None,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        intermediate_size=10944,
        moe_intermediate_size=1408,
        n_routed_experts=64,
        n_shared_experts=2,
        first_k_dense_replace=1,
        num_experts_per_tok=6,
        n_group=1,
        topk_group=1,
        topk_method="greedy",
        scoring_func="softmax",
        norm_topk_prob=False,
        routed_scaling_factor=1.0,
        bos_token_id=100000,
        eos_token_id=100001,
        num_nextn_predict_layers=0,
        initializer_range=0.02,
        rope_scaling={**_V3_YARN, "mscale": 0.707, "mscale_all_dim": 0.707},
    ),  # fmt: skip
    "tiny": _cpu_size("tiny"),
    "mini": _cpu_size("mini"),
    "small": _cpu_size("small"),
    # WHAT-IF, not a released model: a ~1.2T hybrid sized from rumours, MoE every other layer.
    "r2-hybrid": dict(
        hidden_size=8192,
        num_hidden_layers=78,
        num_attention_heads=128,
        q_lora_rank=2048,
        intermediate_size=28672,
        moe_intermediate_size=3072,
        n_routed_experts=384,
        n_shared_experts=1,
        first_k_dense_replace=2,
        moe_layer_freq=2,
        num_experts_per_tok=8,
        n_group=8,
        topk_group=4,
        rope_scaling=_V3_YARN,
        extra={"tinyseek_note": "what-if sizing of the rumoured DeepSeek-R2; not a released model"},
    ),  # fmt: skip
}
