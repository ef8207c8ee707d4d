"""Shared pieces of the trainer tests: their model config, a tokenizer, CLI runs in a subprocess."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import tiny_config
from tinyseek.config import ModelConfig
from tinyseek.tokenizer import Tokenizer
from tinyseek.train.documents import TaskSpec, task_documents

ROOT = Path(__file__).resolve().parents[1]


def micro_config(**overrides: object) -> ModelConfig:
    """The tiny config as the trainer tests train it: 2 layers (one MoE with 8 experts), one MTP depth."""
    micro: dict[str, object] = dict(
        vocab_size=512, num_hidden_layers=2, intermediate_size=64, n_group=1, topk_group=1,
        max_position_embeddings=256, initializer_range=0.02,
    )  # fmt: skip
    return tiny_config(**{**micro, **overrides})


def write_micro_model(directory: Path, **overrides: object) -> Path:
    micro_config(**overrides).save_pretrained(directory)
    return directory


def write_tokenizer(directory: Path) -> Path:
    docs = itertools.islice(task_documents(TaskSpec(("addition",)), seed=0), 300)
    Tokenizer.train(
        (d.prompt + d.completion for d in docs), vocab_size=200, full_byte_alphabet=False
    ).save_pretrained(directory)
    return directory


def child_env() -> dict[str, str]:
    """One OpenMP thread: on a shared 2-core machine two threads make small ops ~100x slower."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tinyseek", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"tinyseek {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tinyseek", *args], env=child_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
