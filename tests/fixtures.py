"""The tiny models every test builds: one V3-shaped config, and tiny model directories with a tokenizer.

- `tiny_config(**overrides)`: a DeepSeek-V3-shaped config (MLA with low-rank queries, MoE with a shared
  expert and group-limited routing, one MTP depth) whose forward takes milliseconds. Every test model
  starts from it; a test overrides only what it is about.
- `tiny_model_dir(directory, tokenizer, ...)`: a random tiny model sized for a tokenizer, both written
  in the HF layout. With `head_bias`, the embedding's first dimension is a constant, so after the final
  norm the hidden state has a large positive first coordinate and the head's first column acts as a
  per-token logit bias: tests then know what the random model tends to write (where it ends, which
  tokens it never writes) while completions still depend on the prompt and seed.
- The model directories the test families share: `grpo_policy_dir` (GRPO: an addition tokenizer, EOS made
  likely), `chat_model_dir` (serving: printable ASCII only, `</think>` made likely), `random_model_dir`
  and `markov_model_dir` (evaluation: a bigram model whose outputs the test knows), and the engine's
  in-memory `random_model` / `bigram_drafted_model` with a character tokenizer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken

from tinyseek.chat_template import R1_ZERO_TEMPLATE, THINK_CLOSE, THINK_OPEN, r1_zero_prompt
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.tasks import get_task
from tinyseek.tokenizer import SPECIAL_TOKENS, Tokenizer

YARN = {
    "type": "yarn",
    "factor": 4.0,
    "original_max_position_embeddings": 32,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
}
SUPPRESSED_BIAS = -30.0
ANSWER_TAGS = ("<answer>", "</answer>")
# What the directory models share beside their tokenizer: two layers, four routed experts, no MTP.
_SMALL = dict(num_hidden_layers=2, n_routed_experts=4, n_group=2, topk_group=1, num_nextn_predict_layers=0)


def tiny_config(**overrides: Any) -> ModelConfig:
    """A V3-shaped config small enough to run in milliseconds."""
    base: dict[str, Any] = dict(
        vocab_size=96,
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
        max_position_embeddings=128,
        num_nextn_predict_layers=1,
        initializer_range=0.1,
    )
    base.update(overrides)
    return ModelConfig(**base)


@torch.no_grad()
def tiny_model_dir(
    directory: Path,
    tokenizer: Tokenizer,
    seed: int = 0,
    head_bias: torch.Tensor | None = None,
    **overrides: Any,
) -> Path:
    """A random tiny model for `tokenizer` (ids and vocabulary from it) and the tokenizer, in the HF layout."""
    config = tiny_config(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **overrides,
    )
    torch.manual_seed(seed)
    model = Transformer(config)
    if head_bias is not None:
        model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight[:, 0] = head_bias / 5.0
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ---- GRPO: a policy over addition problems -------------------------------------------------------
def addition_corpus(n: int = 40) -> list[str]:
    """R1-Zero prompts and worked solutions of addition problems: the GRPO tokenizer's corpus."""
    task = get_task("addition")
    problems = itertools.islice(task.sample(seed=0), n)
    return [r1_zero_prompt(task.prompt(problem)) + task.solution(problem) for problem in problems]


def grpo_policy_dir(directory: Path, context: int = 512, seed: int = 0) -> Path:
    """The GRPO tests' policy: the end of sequence likely enough that completions end at varied lengths
    within a few dozen tokens, the other special tokens suppressed."""
    tokenizer = Tokenizer.train(addition_corpus(), vocab_size=160, full_byte_alphabet=False)
    bias = torch.zeros(tokenizer.vocab_size)
    for token in SPECIAL_TOKENS:
        if token != tokenizer.eos_token:
            bias[tokenizer.token_to_id(token)] = SUPPRESSED_BIAS
    bias[tokenizer.eos_token_id] = 2.0
    return tiny_model_dir(directory, tokenizer, seed, bias, max_position_embeddings=context, **_SMALL)


# ---- serving: a chat model that reasons briefly --------------------------------------------------
CHAT_CORPUS = [
    "The quick brown fox jumps over the lazy dog. 12 + 30 = 42.",
    "Let me think step by step: first add the units, then carry the tens.",
    "Answer: the result is 7. Wait, check again: 3 + 4 = 7, so yes.",
    "Le renard brun saute par-dessus le chien paresseux.",
] * 8


def chat_model_dir(directory: Path, context: int = 256, seed: int = 0) -> Path:
    """The server tests' model: `</think>` likely (most completions close their reasoning within a few
    dozen tokens), the end of sequence rarer, the other special tokens and every token that is not
    printable ASCII suppressed (so text is valid UTF-8 token by token and matches the ids exactly)."""
    tokenizer = Tokenizer.train(CHAT_CORPUS, vocab_size=300)
    bias = torch.zeros(tokenizer.vocab_size)
    for token_id in range(tokenizer.vocab_size):
        text = tokenizer.decode([token_id])
        if not (text.isascii() and text.isprintable()):
            bias[token_id] = SUPPRESSED_BIAS
    for token in [*SPECIAL_TOKENS, THINK_OPEN]:
        bias[tokenizer.token_to_id(token)] = SUPPRESSED_BIAS
    bias[tokenizer.token_to_id(THINK_CLOSE)] = 2.3
    bias[tokenizer.eos_token_id] = 0.4
    return tiny_model_dir(directory, tokenizer, seed, bias, max_position_embeddings=context, **_SMALL)


# ---- evaluation: models whose outputs the test knows ---------------------------------------------
def eval_tokenizer(tasks: tuple[str, ...] = ("addition", "gcd")) -> Tokenizer:
    """A BPE over a few families' prompts and solutions plus the R1-Zero template, whose answer tags
    are single tokens (so a bigram model can write them)."""
    texts = [R1_ZERO_TEMPLATE, "<think>x</think><answer>0123456789</answer>"]
    for name in tasks:
        task = get_task(name)
        for problem in itertools.islice(task.sample(0, 1, "train"), 50):
            texts += [task.prompt(problem), task.solution(problem)]
    tokenizer = Tokenizer.train(texts, vocab_size=160, full_byte_alphabet=False)
    tokenizer.backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in ANSWER_TAGS])
    return tokenizer


_EVAL = dict(_SMALL, n_group=1, max_position_embeddings=512, initializer_range=0.006)


def random_model_dir(directory: Path, seed: int = 0) -> Path:
    """A random 2-layer model with the evaluation tokenizer (structure, reproducibility, CLI)."""
    return tiny_model_dir(directory, eval_tokenizer(), seed, **_EVAL)


@torch.no_grad()
def markov_model_dir(directory: Path, favourite: str = "7", stay: float = 0.3) -> Path:
    """A bigram model: every block's output is zeroed, embeddings are one-hot, the head holds log-probs.

    It writes `<think>x..x</think><answer>D..D</answer>` then EOS, greedy `<think>x</think><answer>F</answer>`.
    Chain: (any prompt token) -> <think> -> x; x -> x (`stay`) or </think>; </think> -> <answer>;
    <answer> -> the `favourite` digit (1/2) or another digit; digit -> </answer> (0.8) or another
    digit; </answer> -> EOS. "\\n" (the end of the chat template's generation prompt) -> x.
    """
    tokenizer = eval_tokenizer()
    vocab = tokenizer.vocab_size
    hidden = -(-vocab // 16) * 16  # grouped expert matmuls need 16-byte strides
    overrides = dict(_EVAL, num_hidden_layers=1)
    config = tiny_config(
        vocab_size=vocab, hidden_size=hidden, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **overrides,
    )  # fmt: skip
    model = silenced(Transformer(config).eval())
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


@torch.no_grad()
def silenced(model: Transformer, attention_scale: float = 0.0, blocks: Sequence[Any] = ()) -> Transformer:
    """Scale every block's attention output by `attention_scale` and zero its feed-forward output, so
    the residual stream carries the token embedding through (a bigram model when the scale is 0)."""
    for block in blocks or model.layers:
        block.self_attn.o_proj.weight.mul_(attention_scale)
        mlp = block.mlp
        if hasattr(mlp, "down_proj"):
            mlp.down_proj.weight.zero_()
        else:
            mlp.experts.down_proj.zero_()
            mlp.shared_experts.down_proj.weight.zero_()
    return model


# ---- the engine: in-memory models and a character tokenizer --------------------------------------
# Large logits (init 0.3): greedy argmax margins far above float noise. No BOS/EOS: the engine tests
# set their own stops.
ENGINE = dict(
    vocab_size=64, max_position_embeddings=256, initializer_range=0.3, bos_token_id=None, eos_token_id=None
)


def random_model(seed: int = 0, **overrides: Any) -> Transformer:
    """A model that decodes in about a millisecond per step."""
    torch.manual_seed(seed)
    return Transformer(tiny_config(**{**ENGINE, **overrides})).eval()


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
    silenced(model, attention_scale, [*model.layers, model.mtp[0].block])
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
