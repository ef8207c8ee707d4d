"""Tiny models and a character tokenizer for the engine tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer


def engine_config(**overrides: Any) -> ModelConfig:
    """A V3-shaped config that decodes in about a millisecond per step."""
    base: dict[str, Any] = dict(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
        intermediate_size=48,
        moe_intermediate_size=16,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        first_k_dense_replace=1,
        max_position_embeddings=256,
        num_nextn_predict_layers=1,
        initializer_range=0.3,  # large logits: greedy argmax margins far above float noise
        bos_token_id=None,
        eos_token_id=None,
    )
    base.update(overrides)
    return ModelConfig(**base)


def random_model(seed: int = 0, **overrides: Any) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(engine_config(**overrides)).eval()


@torch.no_grad()
def bigram_drafted_model(seed: int = 0, attention_scale: float = 0.15) -> Transformer:
    """A model whose MTP module drafts well but not perfectly.

    The main model's layers only add a damped attention term (no feed-forward), so its next token
    mostly follows the current token; the MTP module passes the embedding of the token it is given
    straight to the shared head, i.e. it predicts exactly that bigram. Drafts agree with the main
    model except where attention tips the argmax: a mixed acceptance rate, both verify paths run.
    """
    model = random_model(seed)
    h = model.config.hidden_size
    for block in [*model.layers, model.mtp[0].block]:
        block.self_attn.o_proj.weight.mul_(attention_scale)
        mlp = block.mlp
        if hasattr(mlp, "down_proj"):
            mlp.down_proj.weight.zero_()
        else:
            mlp.experts.down_proj.zero_()
            mlp.shared_experts.down_proj.weight.zero_()
    mtp = model.mtp[0]
    mtp.block.self_attn.o_proj.weight.zero_()
    mtp.eh_proj.weight.zero_()
    mtp.eh_proj.weight[:, :h] = torch.eye(h)
    return model


class CharTokenizer:
    """Characters of a fixed alphabet are tokens; id 0 is EOS. Enough for text prompts and chat."""

    eos_token_id = 0

    def __init__(self, alphabet: str):
        self.chars = ["<eos>", *alphabet]
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.chars[i] for i in ids if not (skip_special_tokens and i == 0))

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, str]],
        add_generation_prompt: bool = True,
        tokenize: bool = False,
    ) -> str | list[int]:
        text = "".join(f"{m['role'][0]}:{m['content']};" for m in messages) + (
            "a:" if add_generation_prompt else ""
        )
        return self.encode(text) if tokenize else text


@torch.no_grad()
def greedy_reference(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """Greedy continuation by full forwards, no cache: what the engine must reproduce."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]
