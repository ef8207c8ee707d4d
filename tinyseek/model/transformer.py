"""Block, MTPModule and Transformer: the DeepSeek-V3 decoder with its multi-token-prediction modules.

Design choices:
- Module names follow the Hugging Face checkpoint (`embed_tokens`, `layers.N.self_attn.q_a_proj`, ...)
  so `hf_tensors()`, the table of checkpoint names, only has to add the `model.` prefix, split the
  stacked experts, and move MTP modules to `model.layers.{num_hidden_layers + d}`; hf_checkpoint.py
  reads and writes the files through that table.
- `hidden_states()` returns the post-final-norm states the head reads; MTP depth 1 takes those (as
  vLLM/SGLang feed the released MTP weights), combines them with the embedding of the next token, runs
  one block and reuses the main model's embedding and output head.
- With a cache the attention takes the absorbed path (inference); without, the expanded path (training).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from tinyseek.config import ModelConfig
from tinyseek.model.attention import MLA, LatentStore
from tinyseek.model.hf_checkpoint import load_tensors, read_config, save_tensors
from tinyseek.model.moe import MLP, Experts, Gate, MoE
from tinyseek.model.norm import RMSNorm
from tinyseek.model.rope import RotaryEmbedding


class Block(nn.Module):
    """Pre-norm decoder layer: x + MLA(norm(x)), then + FFN(norm(x)), FFN dense or MoE by layer index."""

    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        self.self_attn = MLA(config)
        self.mlp: nn.Module
        if config.is_moe_layer(layer_id):
            self.mlp = MoE(config)
        else:
            self.mlp = MLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentStore | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPModule(nn.Module):
    """One MTP depth: h' = eh_proj([enorm(emb(t_{i+k})); hnorm(h_i)]), then a full block."""

    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        h = config.hidden_size
        self.enorm = RMSNorm(h, config.rms_norm_eps)
        self.hnorm = RMSNorm(h, config.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.block = Block(config, layer_id)
        self.shared_head_norm = RMSNorm(h, config.rms_norm_eps)

    def forward(
        self,
        hidden: torch.Tensor,
        next_embeds: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentStore | None = None,
    ) -> torch.Tensor:
        """Returns the block output h_i^k (pre-norm): the input of the next depth."""
        x = self.eh_proj(torch.cat([self.enorm(next_embeds), self.hnorm(hidden)], dim=-1))
        return self.block(x, cos, sin, positions, cache)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(config)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        n = config.num_hidden_layers
        self.mtp = nn.ModuleList(MTPModule(config, n + d) for d in range(config.num_nextn_predict_layers))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, Gate):
                nn.init.normal_(module.weight, std=std)
                if module.e_score_correction_bias is not None:
                    module.e_score_correction_bias.zero_()
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, Experts):
                nn.init.normal_(module.gate_up_proj, std=std)
                nn.init.normal_(module.down_proj, std=std)

    def to_dtype(self, dtype: torch.dtype) -> Transformer:
        """Cast the weights to `dtype`; the gates' correction biases stay fp32 (their ~1e-3 balancing
        updates would vanish in bf16). Plain `.to(dtype)` casts every floating tensor, biases too."""
        gates = [m for m in self.modules() if isinstance(m, Gate) and m.e_score_correction_bias is not None]
        biases = [g.e_score_correction_bias for g in gates]
        self.to(dtype)
        for gate, bias in zip(gates, biases, strict=True):
            gate.e_score_correction_bias = bias
        return self

    def _positions(self, input_ids: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        if positions is None:
            if input_ids.shape[1] > self.config.max_position_embeddings:
                raise ValueError(
                    f"input of {input_ids.shape[1]} tokens: expected at most max_position_embeddings="
                    f"{self.config.max_position_embeddings}"
                )
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        return positions

    def hidden_states(
        self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, cache: object | None = None
    ) -> torch.Tensor:
        """Post-final-norm hidden states [B, T, H]. `cache` has `.layer(i) -> LatentStore`."""
        positions = self._positions(input_ids, positions)
        cos, sin = self.rotary(positions)
        x = self.embed_tokens(input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, positions, None if cache is None else cache.layer(i))  # type: ignore[attr-defined]
        return self.norm(x)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, cache: object | None = None
    ) -> torch.Tensor:
        """Logits [B, T, vocab]."""
        return self.lm_head(self.hidden_states(input_ids, positions, cache))

    def mtp_hidden_states(
        self,
        hidden: torch.Tensor,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: object | None = None,
    ) -> list[torch.Tensor]:
        """MTP outputs, normed for the head: depth k's row i predicts token i + k + 1.

        Depth k sees rows 0..T-1-k (the ones whose token i + k exists in `input_ids`)."""
        positions = self._positions(input_ids, positions)
        outputs, h = [], hidden
        n = self.config.num_hidden_layers
        for k, mtp in enumerate(self.mtp, start=1):
            module = cast(MTPModule, mtp)
            pos = positions[:, : input_ids.shape[1] - k]
            cos, sin = self.rotary(pos)
            layer_cache = None if cache is None else cache.layer(n + k - 1)  # type: ignore[attr-defined]
            h = module(h[:, : pos.shape[1]], self.embed_tokens(input_ids[:, k:]), cos, sin, pos, layer_cache)
            outputs.append(module.shared_head_norm(h))
        return outputs

    # ---- the Hugging Face layout (its files: tinyseek/model/hf_checkpoint.py) --------------------
    def hf_tensors(self) -> dict[str, torch.Tensor]:
        """Checkpoint name -> the tensor of this model it is loaded into / saved from."""
        cfg = self.config
        out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": self.embed_tokens.weight}

        def add_block(prefix: str, block: Block) -> None:
            for name, tensor in [*block.named_parameters(), *block.named_buffers()]:
                if ".experts." in f".{name}":
                    continue
                out[f"{prefix}.{name}"] = tensor
            mlp = block.mlp
            if isinstance(mlp, MoE):
                inter = mlp.experts.down_proj.shape[-1]
                for e in range(mlp.n_routed_experts):
                    out[f"{prefix}.mlp.experts.{e}.gate_proj.weight"] = mlp.experts.gate_up_proj[e, :inter]
                    out[f"{prefix}.mlp.experts.{e}.up_proj.weight"] = mlp.experts.gate_up_proj[e, inter:]
                    out[f"{prefix}.mlp.experts.{e}.down_proj.weight"] = mlp.experts.down_proj[e]

        for i, layer in enumerate(self.layers):
            add_block(f"model.layers.{i}", cast(Block, layer))
        out["model.norm.weight"] = self.norm.weight
        if not cfg.tie_word_embeddings:
            out["lm_head.weight"] = self.lm_head.weight
        for d, mtp in enumerate(self.mtp):
            module = cast(MTPModule, mtp)
            prefix = f"model.layers.{cfg.num_hidden_layers + d}"
            out[f"{prefix}.enorm.weight"] = module.enorm.weight
            out[f"{prefix}.hnorm.weight"] = module.hnorm.weight
            out[f"{prefix}.eh_proj.weight"] = module.eh_proj.weight
            out[f"{prefix}.shared_head.norm.weight"] = module.shared_head_norm.weight
            add_block(prefix, module.block)
        return out

    def mtp_copies(self) -> dict[str, torch.Tensor]:
        """The embedding and head copies each MTP module stores in the released checkpoint format."""
        n = self.config.num_hidden_layers
        out = {}
        for d in range(len(self.mtp)):
            out[f"model.layers.{n + d}.embed_tokens.weight"] = self.embed_tokens.weight
            out[f"model.layers.{n + d}.shared_head.head.weight"] = self.lm_head.weight
        return out

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Transformer:
        """Build from a HF-format directory, tensor by tensor (FP8 dequantized). Returns it in eval mode.

        Built on the meta device and allocated once in `dtype`: never two full copies in memory."""
        directory = Path(path)
        config, fp8_block = read_config(directory)
        with torch.device("meta"):
            model = cls(config)
        model = model.to_dtype(dtype).to_empty(device=device)
        model.rotary = RotaryEmbedding(config).to(device)  # its cos/sin tables are computed, not stored
        if config.tie_word_embeddings:  # to_empty gave the head storage of its own
            model.lm_head.weight = model.embed_tokens.weight
        load_tensors(directory, model.hf_tensors(), set(model.mtp_copies()), fp8_block)
        return model.eval()

    def save_pretrained(self, path: str | Path, max_shard_bytes: int = 5 * 2**30) -> Path:
        """Write config.json, generation_config.json and safetensors shards: loads in transformers."""
        return save_tensors(Path(path), self.hf_tensors(), self.mtp_copies(), self.config, max_shard_bytes)

    def num_parameters(self) -> int:
        """Unique parameter elements plus the correction biases (both are checkpoint tensors)."""
        biases = sum(
            b.numel() for name, b in self.named_buffers() if name.endswith("e_score_correction_bias")
        )
        return sum(p.numel() for p in self.parameters()) + biases
