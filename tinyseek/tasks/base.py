"""The contract every verifiable task family follows.

A task turns (seed, difficulty, split) into a `Problem` deterministically, renders the prompt and a
worked step-by-step solution (for pretraining/SFT corpora) in a language, and scores a completion
with a program, never a model. Train and test never overlap: `split_of` hashes the canonical
problem, and `sample` keeps drawing until the hash lands in the requested split.
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
LANGUAGES = ("en", "fr", "zh")
TEST_SHARE = 0.1  # share of the canonical-problem hash space that belongs to the test split
# The next share of the hash space: problems for tuning recipes and for curves during RL, never for
# reporting a result and never for training.
VALIDATION_SHARE = 0.05


@dataclass(frozen=True)
class Problem:
    """One problem instance. `canonical` identifies it independently of language and rendering."""

    task: str
    canonical: str
    answer: str
    data: dict[str, Any] = field(default_factory=dict)


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    return lang


def split_of(canonical: str) -> Split:
    """Deterministic split from a hash of the canonical form (stable across runs and machines)."""
    h = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") / 2**64
    if h < TEST_SHARE:
        return "test"
    return "validation" if h < TEST_SHARE + VALIDATION_SHARE else "train"


class Task(ABC):
    """A family of verifiable problems."""

    name: str = ""

    @abstractmethod
    def make(self, rng: random.Random, difficulty: int) -> Problem:
        """Draw one problem (in either split) at the given difficulty."""

    @abstractmethod
    def prompt(self, problem: Problem, lang: str = "en") -> str:
        """The question as shown to the model."""

    @abstractmethod
    def solution(self, problem: Problem, lang: str = "en") -> str:
        """A correct worked solution: the reasoning, then the final answer in <answer>...</answer>."""

    @abstractmethod
    def score(self, problem: Problem, completion: str) -> float:
        """Reward in [0, 1] for a completion (1.0 = correct); reads <answer> or \\boxed{}."""

    def sample(self, seed: int, difficulty: int = 1, split: Split = "train") -> Iterator[Problem]:
        """An endless, reproducible stream of problems from one split."""
        rng = random.Random(f"{self.name}:{seed}:{difficulty}:{split}")
        while True:
            problem = self.make(rng, difficulty)
            if split_of(problem.canonical) == split:
                yield problem
