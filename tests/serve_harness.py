"""Test harness for the server: a tiny model directory and the real server on a loopback port.

The model is random but shaped so tests can rely on what it writes: the embedding's first dimension
is a constant, so after the final norm the hidden state always has a large positive first coordinate,
and the head's first column then acts as a per-token logit bias. It makes `</think>` likely (most
completions close their reasoning within a few dozen tokens), the end of sequence rarer, and
suppresses the other special tokens and every token that is not printable ASCII (so text is valid
UTF-8 token by token and decoded text matches token ids exactly). The rest of the weights stay
random, so completions still depend on the prompt and the seed.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import torch

from tinyseek.chat_template import THINK_CLOSE, THINK_OPEN
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.serve.app import DrainingServer, make_server
from tinyseek.serve.state import ServerSettings, ServerState
from tinyseek.tokenizer import SPECIAL_TOKENS, Tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog. 12 + 30 = 42.",
    "Let me think step by step: first add the units, then carry the tens.",
    "Answer: the result is 7. Wait, check again: 3 + 4 = 7, so yes.",
    "Le renard brun saute par-dessus le chien paresseux.",
] * 8

THINK_CLOSE_BIAS = 2.3
EOS_BIAS = 0.4
SUPPRESSED_BIAS = -30.0


def build_model_dir(directory: Path, context: int = 256, seed: int = 0) -> Path:
    """Write a tiny DeepSeek-V3-shaped model + tokenizer in HF layout; returns the directory."""
    tokenizer = Tokenizer.train(CORPUS, vocab_size=300)
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
        for token_id in range(vocab):
            text = tokenizer.decode([token_id])
            if not (text.isascii() and text.isprintable()):
                bias[token_id] = SUPPRESSED_BIAS
        for token in [*SPECIAL_TOKENS, THINK_OPEN]:
            bias[tokenizer.token_to_id(token)] = SUPPRESSED_BIAS
        bias[tokenizer.token_to_id(THINK_CLOSE)] = THINK_CLOSE_BIAS
        bias[tokenizer.eos_token_id] = EOS_BIAS
        model.lm_head.weight[:, 0] = bias / 5.0
    model.save_pretrained(directory)
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """The real uvicorn server in a thread of the test process; `stop()` shuts it down."""

    def __init__(self, settings: ServerSettings, drain_timeout: float = 5.0, wait: bool = True) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: DrainingServer = make_server(settings, "127.0.0.1", self.port, drain_timeout)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        if wait:
            self.wait_ready()
        else:
            self.wait_listening()

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on {self.base_url} not listening after {timeout}s")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server on {self.base_url} not healthy after {timeout}s")

    @property
    def state(self) -> ServerState:
        return self.server.state

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
