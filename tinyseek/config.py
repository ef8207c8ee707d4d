"""ModelConfig: the DeepSeek-V3 `config.json`, field for field, plus named presets.

Design choices:
- Field names are exactly the Hugging Face DeepseekV3 ones, so a released `config.json` loads as is and
  what we write loads in transformers, vLLM and SGLang. Unknown keys are kept in `extra` and written back.
- RoPE is stored the way the released checkpoints store it (`rope_theta` + `rope_scaling`); the
  `rope_parameters` form that transformers 5.x writes is read too.
- `validate()` rejects impossible combinations with a message naming the field, at construction time.
- Fields are grouped by concern: vocabulary and width, attention (MLA), feed-forward (MoE), routing,
  positions, multi-token prediction.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")
SCORING_FUNCS = ("softmax", "sigmoid")
# transformers-only bookkeeping that we recompute on write rather than carry over.
_DERIVED_KEYS = {
    "qk_head_dim",
    "head_dim",
    "rope_parameters",
    "rope_interleave",
    "transformers_version",
    "dtype",
    "model_type",
    "architectures",
    "num_key_value_heads",
}


@dataclass
class ModelConfig:
    # Vocabulary and width.
    vocab_size: int = 129280
    hidden_size: int = 7168
    num_hidden_layers: int = 61
    rms_norm_eps: float = 1e-6  # every RMSNorm (block inputs, q/kv latents, final, MTP)
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 0
    eos_token_id: int | None = 1
    pad_token_id: int | None = None
    initializer_range: float = 0.006
    hidden_act: str = "silu"
    # Attention (MLA): queries through an optional low-rank q_lora_rank, keys/values through the latent.
    num_attention_heads: int = 128
    q_lora_rank: int | None = 1536
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128  # per-head query/key dims without rotation; the rope ones are shared
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    # Feed-forward: dense layers first, then MoE every `moe_layer_freq` layers.
    intermediate_size: int = 18432
    moe_intermediate_size: int = 2048
    n_routed_experts: int = 256
    n_shared_experts: int = 1  # one shared expert is n_shared_experts x moe_intermediate_size wide
    first_k_dense_replace: int = 3
    moe_layer_freq: int = 1
    # Routing.
    num_experts_per_tok: int = 8
    n_group: int = 8  # expert groups; only the best topk_group groups are eligible
    topk_group: int = 4
    topk_method: str = "noaux_tc"
    scoring_func: str = "sigmoid"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 2.5  # applied to the normalized routing weights
    aux_loss_alpha: float = 0.001
    seq_aux: bool = True
    # Positions: RoPE on qk_rope_head_dim only, YaRN when rope_scaling is set.
    max_position_embeddings: int = 163840
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    # Multi-token prediction modules (stored after the main layers).
    num_nextn_predict_layers: int = 1
    # Keys we do not interpret, kept so that a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> int:
        """Numbers cached per token per layer by MLA: the KV latent plus the shared rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def is_moe_layer(self, layer: int) -> bool:
        """DeepSeek's rule: MoE from `first_k_dense_replace` on, every `moe_layer_freq`-th layer."""
        return (
            self.n_routed_experts > 0
            and layer >= self.first_k_dense_replace
            and layer % self.moe_layer_freq == 0
        )

    @property
    def softmax_scale(self) -> float:
        """qk_head_dim^-0.5, times mscale^2 when YaRN is on (the reports' long-context fix)."""
        scale = self.qk_head_dim**-0.5
        rs = self.rope_scaling
        if rs and rs.get("mscale_all_dim") and rs.get("factor", 1.0) > 1:
            mscale = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
            scale *= mscale * mscale
        return scale

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}: expected {expected}")

        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "kv_lora_rank", "qk_nope_head_dim", "v_head_dim", "intermediate_size",
                     "max_position_embeddings"):  # fmt: skip
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name, "a positive integer")
        need(self.q_lora_rank is None or self.q_lora_rank > 0, "q_lora_rank", "null or a positive integer")
        need(
            self.qk_rope_head_dim > 0 and self.qk_rope_head_dim % 2 == 0,
            "qk_rope_head_dim",
            "a positive even integer",
        )
        need(self.hidden_act == "silu", "hidden_act", "'silu' (SwiGLU experts)")
        need(self.rms_norm_eps > 0, "rms_norm_eps", "> 0")
        need(self.rope_theta > 0, "rope_theta", "> 0")
        need(0 <= self.first_k_dense_replace <= self.num_hidden_layers, "first_k_dense_replace",
             f"between 0 and num_hidden_layers={self.num_hidden_layers}")  # fmt: skip
        need(self.moe_layer_freq >= 1, "moe_layer_freq", ">= 1")
        need(self.num_nextn_predict_layers >= 0, "num_nextn_predict_layers", ">= 0")
        need(self.n_routed_experts >= 0, "n_routed_experts", ">= 0")
        if self.n_routed_experts > 0:
            need(self.moe_intermediate_size > 0, "moe_intermediate_size", "a positive integer")
            need(self.n_shared_experts >= 0, "n_shared_experts", ">= 0")
            need(self.topk_method in TOPK_METHODS, "topk_method", f"one of {TOPK_METHODS}")
            need(self.scoring_func in SCORING_FUNCS, "scoring_func", f"one of {SCORING_FUNCS}")
            need(self.n_group >= 1 and self.n_routed_experts % self.n_group == 0, "n_group",
                 f"a divisor of n_routed_experts={self.n_routed_experts}")  # fmt: skip
            need(1 <= self.topk_group <= self.n_group, "topk_group", f"between 1 and n_group={self.n_group}")
            reachable = self.n_routed_experts
            if self.topk_method != "greedy":
                reachable = self.topk_group * (self.n_routed_experts // self.n_group)
            need(1 <= self.num_experts_per_tok <= reachable, "num_experts_per_tok",
                 f"between 1 and the {reachable} experts the selected groups offer")  # fmt: skip
            if self.topk_method == "noaux_tc":
                need(self.scoring_func == "sigmoid", "scoring_func", "'sigmoid' with topk_method='noaux_tc'")
                need(self.n_routed_experts // self.n_group >= 2, "n_group",
                     "at most n_routed_experts/2 (noaux_tc scores a group by its top-2 experts)")  # fmt: skip
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("type", self.rope_scaling.get("rope_type"))
            if kind not in ("yarn", "default", None):
                raise ValueError(f"ModelConfig.rope_scaling type={kind!r}: expected 'yarn' or null")
            if kind == "yarn":
                for key in ("factor", "original_max_position_embeddings"):
                    if key not in self.rope_scaling:
                        raise ValueError(f"ModelConfig.rope_scaling: missing {key!r} for yarn")
                if self.rope_scaling["factor"] < 1:
                    raise ValueError(
                        f"ModelConfig.rope_scaling.factor={self.rope_scaling['factor']}: expected >= 1"
                    )

    # ---- (de)serialization --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        raw = dict(raw)
        if raw.get("model_type") == "deepseek_v2":  # V2 configs omit what differs from V3's defaults
            raw.setdefault("scoring_func", "softmax")
            raw.setdefault("topk_method", "greedy")
            raw.setdefault("norm_topk_prob", False)
            raw.setdefault("num_nextn_predict_layers", 0)
        rope_parameters = raw.pop("rope_parameters", None)
        if rope_parameters and "rope_scaling" not in raw:
            rp = dict(rope_parameters)
            raw.setdefault("rope_theta", rp.pop("rope_theta", 10000.0))
            kind = rp.get("rope_type", rp.get("type", "default"))
            raw["rope_scaling"] = None if kind == "default" else {"type": kind, **rp}
        if raw.get("rope_scaling") is not None:
            rs = dict(raw["rope_scaling"])
            rs["type"] = rs.pop("rope_type", rs.get("type"))
            raw["rope_scaling"] = rs
            if rs["type"] == "default":
                raw["rope_scaling"] = None
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in raw.items() if k in names}
        extra = {k: v for k, v in raw.items() if k not in names and k not in _DERIVED_KEYS}
        if isinstance(known.get("eos_token_id"), list):  # some configs list several; the first ends text
            extra["eos_token_ids"] = known["eos_token_id"]
            known["eos_token_id"] = known["eos_token_id"][0]
        for key in ("n_group", "topk_group"):
            if key in known and known[key] is None:
                known[key] = 1
        if known.get("n_routed_experts") is None and "n_routed_experts" in known:
            known["n_routed_experts"] = 0
        known.setdefault("num_nextn_predict_layers", raw.get("num_mtp_layers", 0))
        return cls(**known, extra=extra)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ModelConfig:
        """Read a model directory's config.json, or a config.json file itself."""
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"no config.json at {path}")
        try:
            raw = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}: not valid JSON ({err})") from err
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        out.update(self.extra)
        out.pop("eos_token_ids", None)
        v3 = self.topk_method == "noaux_tc"  # transformers' V2 classes carry softmax routing
        out.update(
            model_type="deepseek_v3" if v3 else "deepseek_v2",
            architectures=["DeepseekV3ForCausalLM" if v3 else "DeepseekV2ForCausalLM"],
            # transformers needs these to treat MLA heads as full heads.
            num_key_value_heads=self.num_attention_heads,
            rope_interleave=True,
        )
        return out

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        file = directory / "config.json"
        file.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return file

    def replace(self, **changes: Any) -> ModelConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        from tinyseek.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A preset name, a model directory or a config.json path (what CLI commands accept)."""
    from tinyseek.presets import PRESETS

    if str(name_or_path) in PRESETS:
        return ModelConfig.preset(str(name_or_path))
    path = Path(name_or_path)
    if path.exists():
        return ModelConfig.from_pretrained(path)
    raise ValueError(
        f"{name_or_path!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing path"
    )
