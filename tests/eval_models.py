"""Tiny model directories with a real tokenizer for the evaluation and rejection-sampling tests.

`random_model_dir`: a random model (structure, reproducibility, CLI). `markov_model_dir`: a model whose
next token depends only on the current one, with transition probabilities we set, so the test knows
what it writes: `<think>x..x</think><answer>D..D</answer>` then EOS, greedy `<think>x</think><answer>F</answer>`.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from tokenizers import AddedToken

from tinyseek.chat_template import R1_ZERO_TEMPLATE
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.tasks import get_task
from tinyseek.tokenizer import Tokenizer

ANSWER_TAGS = ("<answer>", "</answer>")


def corpus(tasks: tuple[str, ...] = ("addition", "gcd")) -> list[str]:
    """Prompts and solutions of a few families plus the R1-Zero template: every character a test needs."""
    texts = [R1_ZERO_TEMPLATE, "<think>x</think><answer>0123456789</answer>"]
    for name in tasks:
        task = get_task(name)
        for problem in itertools.islice(task.sample(0, 1, "train"), 50):
            texts += [task.prompt(problem), task.solution(problem)]
    return texts


def tiny_tokenizer() -> Tokenizer:
    """A corpus-alphabet BPE whose answer tags are single tokens (so a bigram model can write them)."""
    tokenizer = Tokenizer.train(corpus(), vocab_size=160, full_byte_alphabet=False)
    tokenizer.backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in ANSWER_TAGS])
    return tokenizer


def tiny_config(tokenizer: Tokenizer, hidden_size: int = 32, layers: int = 2) -> ModelConfig:
    return ModelConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
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


def random_model_dir(directory: Path, seed: int = 0) -> Path:
    """A random 2-layer model with the tiny tokenizer, saved in the HF layout."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    Transformer(tiny_config(tokenizer)).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@torch.no_grad()
def markov_model_dir(directory: Path, favourite: str = "7", stay: float = 0.3) -> Path:
    """A bigram model: every block's output is zeroed, embeddings are one-hot, the head holds log-probs.

    Chain: (any prompt token) -> <think> -> x; x -> x (`stay`) or </think>; </think> -> <answer>;
    <answer> -> the `favourite` digit (1/2) or another digit; digit -> </answer> (0.8) or another
    digit; </answer> -> EOS. "\\n" (the end of the chat template's generation prompt) -> x.
    """
    tokenizer = tiny_tokenizer()
    vocab = tokenizer.vocab_size
    hidden = -(-vocab // 16) * 16  # grouped expert matmuls need 16-byte strides
    model = Transformer(tiny_config(tokenizer, hidden_size=hidden, layers=1)).eval()
    for block in model.layers:
        block.self_attn.o_proj.weight.zero_()
        mlp = block.mlp
        if hasattr(mlp, "down_proj"):
            mlp.down_proj.weight.zero_()
        else:
            mlp.experts.down_proj.zero_()
            mlp.shared_experts.down_proj.weight.zero_()
    ids = {t: tokenizer.token_to_id(t) for t in ("<think>", "</think>", "x", *ANSWER_TAGS)}
    digits = [tokenizer.encode(str(d), add_special_tokens=False)[0] for d in range(10)]
    eos = tokenizer.eos_token_id
    assert eos is not None
    newline = tokenizer.encode("\n", add_special_tokens=False)[0]
    probs = torch.zeros(vocab, vocab)  # probs[current, next]
    probs[:, ids["<think>"]] = 1.0
    chain = {
        ids["<think>"]: {ids["x"]: 1.0},
        newline: {ids["x"]: 1.0},
        ids["x"]: {ids["x"]: stay, ids["</think>"]: 1 - stay},
        ids["</think>"]: {ids["<answer>"]: 1.0},
        ids["<answer>"]: {d: (0.5 if str(i) == favourite else 0.5 / 9) for i, d in enumerate(digits)},
        ids["</answer>"]: {eos: 1.0},
        eos: {eos: 1.0},
    }
    for i, d in enumerate(digits):
        chain[d] = {ids["</answer>"]: 0.8, **{e: 0.2 / 9 for j, e in enumerate(digits) if j != i}}
    for current, nexts in chain.items():
        probs[current] = 0.0
        for token, p in nexts.items():
            probs[current, token] = p
    log_probs = torch.where(probs > 0, probs.clamp_min(1e-30).log(), torch.full_like(probs, -50.0))
    model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
    model.norm.weight.fill_(1.0)
    model.lm_head.weight.zero_()
    model.lm_head.weight[:, :vocab] = log_probs.T / math.sqrt(hidden)  # RMSNorm(one-hot) = sqrt(H) one-hot
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
