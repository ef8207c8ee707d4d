"""A tiny policy for the GRPO tests: a tokenizer trained on addition problems and a random V3-shaped model.

The head's first column is a per-token logit bias (the embedding's first dimension is a constant, so
the normed hidden state has a large positive first coordinate): the end of sequence is made likely
enough that completions end at varied lengths within a few dozen tokens, and the other special
tokens are suppressed. Everything else stays random, so completions depend on the prompt and seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinyseek.chat_template import r1_zero_prompt
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.tasks import get_task
from tinyseek.tokenizer import SPECIAL_TOKENS, Tokenizer

EOS_BIAS = 2.0
SUPPRESSED_BIAS = -30.0


def corpus(n: int = 40) -> list[str]:
    task = get_task("addition")
    texts = []
    for problem, _ in zip(task.sample(seed=0), range(n), strict=False):
        texts.append(r1_zero_prompt(task.prompt(problem)) + task.solution(problem))
    return texts


def build_policy_dir(directory: Path, context: int = 512, seed: int = 0) -> Path:
    """Write the tiny model + tokenizer in the HF layout; returns the directory."""
    tokenizer = Tokenizer.train(corpus(), vocab_size=160, full_byte_alphabet=False)
    tokenizer.save_pretrained(directory)
    vocab = tokenizer.vocab_size
    config = ModelConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=8,
        intermediate_size=48,
        moe_intermediate_size=16,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=2,
        topk_group=1,
        first_k_dense_replace=1,
        max_position_embeddings=context,
        num_nextn_predict_layers=0,
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        model.embed_tokens.weight[:, 0] = 1.0
        bias = torch.zeros(vocab)
        for token in SPECIAL_TOKENS:
            if token != tokenizer.eos_token:
                bias[tokenizer.token_to_id(token)] = SUPPRESSED_BIAS
        bias[tokenizer.eos_token_id] = EOS_BIAS
        model.lm_head.weight[:, 0] = bias / 5.0
    model.save_pretrained(directory)
    return directory
