"""Worked traces with controlled flaws: the shared machinery of the procedural task families.

A task family describes its work as short, regular lines (`work`) and how to verify an answer
(`check`). From those, `ReasoningTask.trace` renders three kinds of trace for pretraining corpora:

- correct traces (the default; `solution()` is always one);
- traces with *systematic* slips: each family marks some steps as error-prone by a rule on the step
  and its operands (e.g. "a carry out of a column whose top digit is larger than the bottom digit"),
  and each such step goes wrong with probability `error_rate`. With `error_rate > 0.5`, a model
  trained on the corpus is expected to give the same wrong majority answer on every problem that
  has an error-prone step, and to be right elsewhere: the kind of flaw RL has to fix step by step,
  not with a single global switch;
- self-checking traces (probability `self_check_rate`, `checked_work`): by default a verification
  line by the reverse operation before the answer; when it fails (the trace had slipped) the trace
  says so and redoes the work without slips. A family may check otherwise (column arithmetic does
  the work again and compares), but self-checking traces always end
  correct, so RL can raise their share;
- direct answers (probability `direct_rate`): an empty reasoning and the right answer. A small model
  cannot compute most answers in one step, so these are a short behaviour that is usually wrong in
  its hands: the reason for RL to make the model think longer.

Each line is language-specific text around language-neutral arithmetic (`8+7=15`), which keeps the
format compact enough for a 1-2M-parameter model and lets a language reward count words.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tinyseek.tasks.answer import extract_answer, numbers_equal
from tinyseek.tasks.base import Problem, Task, check_language

REDO = {"en": "Redo:", "fr": "Je recommence :", "zh": "重新计算："}
CHECK = {"en": "Check: ", "fr": "Vérification : ", "zh": "验算："}
OK_MARK, BAD_MARK = "✓", "✗"

# A family's step renderer asks `slip(prone)` at each step; True means "make the systematic error here".
Slip = Callable[[bool], bool]
MAX_DIFFICULTY = 8


@dataclass(frozen=True)
class Trace:
    """A rendered worked solution and what it contains."""

    reasoning: str
    answer: str
    correct: bool
    self_checked: bool
    slipped: bool
    direct: bool = False

    def text(self) -> str:
        """The reasoning, then the final answer in an answer tag (the `Task.solution` format)."""
        return f"{self.reasoning}\n<answer>{self.answer}</answer>"


def check_difficulty(difficulty: int, lowest: int = 1) -> int:
    if not lowest <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty {difficulty} out of range; expected {lowest}..{MAX_DIFFICULTY}")
    return difficulty


def check_line(lang: str, equations: Sequence[str], ok: bool) -> str:
    """`Check: 825-467=358 ✓` in the trace's language."""
    return f"{CHECK[lang]}{', '.join(equations)} {OK_MARK if ok else BAD_MARK}"


class ReasoningTask(Task):
    """A task whose solution is a sequence of short computed lines ending in a numeric answer."""

    @abstractmethod
    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        """The reasoning lines and the answer they reach (wrong where `slip` said so)."""

    @abstractmethod
    def checked_work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        """A self-checking trace's lines and the answer they end with (always the right one)."""

    def is_correct(self, problem: Problem, answer: str | None) -> bool:
        return numbers_equal(answer, problem.answer)

    def trace(
        self,
        problem: Problem,
        lang: str = "en",
        error_rate: float = 0.0,
        self_check_rate: float = 0.0,
        rng: random.Random | None = None,
        direct_rate: float = 0.0,
    ) -> Trace:
        """Render a direct answer or a worked solution with systematic slips and optional self-check
        (module docstring): a direct answer with probability `direct_rate`, else a self-checking
        trace with probability `self_check_rate`, else the plain work.

        `rng` drives the random choices; by default it is seeded by the problem, so the same call
        gives the same trace.
        """
        check_language(lang)
        rates = (
            ("error_rate", error_rate),
            ("self_check_rate", self_check_rate),
            ("direct_rate", direct_rate),
        )
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        rng = rng or random.Random(f"{self.name}:{problem.canonical}:{lang}")
        if direct_rate > 0 and rng.random() < direct_rate:
            return Trace("", problem.answer, True, self_checked=False, slipped=False, direct=True)
        slipped = False

        def slip(prone: bool) -> bool:
            nonlocal slipped
            hit = prone and error_rate > 0 and rng.random() < error_rate
            slipped = slipped or hit
            return hit

        self_checked = self_check_rate > 0 and rng.random() < self_check_rate
        render = self.checked_work if self_checked else self.work
        lines, answer = render(problem, lang, slip)
        return Trace(
            reasoning="\n".join(lines),
            answer=answer,
            correct=self.is_correct(problem, answer),
            self_checked=self_checked,
            slipped=slipped,
        )

    def solution(self, problem: Problem, lang: str = "en") -> str:
        return self.trace(problem, lang).text()

    def score(self, problem: Problem, completion: str) -> float:
        return 1.0 if self.is_correct(problem, extract_answer(completion)) else 0.0


class ReverseCheckedTask(ReasoningTask):
    """A reasoning task that self-checks once, after the work, by the reverse operation.

    The check line (`check`) verifies the answer; when it fails, a redo marker, the work without slips
    and its check follow.
    """

    @abstractmethod
    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        """A verification line for `answer` (reverse operation) and whether it passes."""

    def checked_work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        lines, answer = self.work(problem, lang, slip)
        line, ok = self.check(problem, answer, lang)
        lines.append(line)
        if not ok:
            redo, answer = self.work(problem, lang, lambda prone: False)
            lines += [REDO[lang], *redo, self.check(problem, answer, lang)[0]]
        return lines, answer
