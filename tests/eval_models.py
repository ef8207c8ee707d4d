"""A tiny model directory with a real tokenizer for the evaluation and rejection-sampling tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from tinyseek.chat_template import R1_ZERO_TEMPLATE
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.tasks import get_task
from tinyseek.tokenizer import Tokenizer


def corpus(tasks: tuple[str, ...] = ("addition", "gcd")) -> list[str]:
    """Prompts and solutions of a few families plus the R1-Zero template: every character a test needs."""
    texts = [R1_ZERO_TEMPLATE, "<think></think><answer></answer>#"]
    for name in tasks:
        task = get_task(name)
        for problem in itertools.islice(task.sample(0, 1, "train"), 50):
            texts += [task.prompt(problem), task.solution(problem)]
    return texts


def tiny_model_dir(directory: Path, seed: int = 0) -> Path:
    """A random 3-layer model with a corpus-alphabet BPE tokenizer, saved in the HF layout."""
    tokenizer = Tokenizer.train(corpus(), vocab_size=160, full_byte_alphabet=False)
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
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
        n_group=1,
        topk_group=1,
        first_k_dense_replace=1,
        max_position_embeddings=512,
        num_nextn_predict_layers=0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    Transformer(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
