"""Benchmarks from JSONL files on disk (GSM8K-style and MATH-style), as Tasks.

- GSM8K style: `{"question": ..., "answer": "...reasoning... #### 72"}`; the number after `####` is the
  reference (thousands commas removed); `<<48/2=24>>` calculator notes are dropped from the solution.
- MATH style: `{"problem": ..., "solution": "... \\boxed{\\frac{1}{2}} ..."}`; the reference is the
  last `\\boxed{}` of the solution, or an explicit `"answer"` field when the record has one.

Answers are compared exactly as rationals when both sides are plain numbers, else with
`math-verify` (symbolic equivalence: `\\sqrt{2}` = `2^{1/2}`, `10\\%` = `0.1`). math-verify's timeout
uses SIGALRM, which only the main thread may set, so other threads parse without a timeout.

Files are read whole and validated up front: a malformed line or a missing field is a ValueError
naming the file and the 1-based line. A file is one split when the caller says so (GSM8K ships
train.jsonl and test.jsonl); otherwise records are split by `split_of`, like procedural tasks.
`prompt` returns the record's text as is: a file's language is the file's, so `lang` is ignored.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tinyseek.tasks.answer import extract_answer, last_boxed, numbers_equal, parse_number
from tinyseek.tasks.base import Problem, Split, Task, split_of

Style = Literal["gsm8k", "math"]
STYLES: tuple[Style, ...] = ("gsm8k", "math")
_FIELDS = {"gsm8k": ("question", "answer"), "math": ("problem", "solution")}
_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


def answers_match(predicted: str | None, reference: str) -> bool:
    """Exact rational comparison when both are numbers, symbolic equivalence (math-verify) otherwise."""
    if predicted is None or not predicted.strip():
        return False
    if parse_number(predicted) is not None and parse_number(reference) is not None:
        return numbers_equal(predicted, reference)
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold = parse(f"${reference}$", parsing_timeout=timeout)
    guess = parse(f"${predicted}$", parsing_timeout=timeout)
    return bool(gold and guess and verify(gold, guess, timeout_seconds=timeout))


def _record(path: Path, number: int, line: str, style: Style) -> Problem:
    where = f"{path}:{number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: invalid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    question_key, solution_key = _FIELDS[style]
    for key in (question_key, solution_key):
        if not isinstance(record.get(key), str):
            raise ValueError(
                f"{where}: missing or non-string field {key!r} ({style} records need "
                f"{question_key!r} and {solution_key!r}; found {sorted(record)})"
            )
    question, solution = record[question_key], record[solution_key]
    if style == "gsm8k":
        reasoning, sep, final = solution.rpartition("####")
        answer = final.strip().replace(",", "")
        if not sep or not answer:
            raise ValueError(f"{where}: field 'answer' must end with '#### <final answer>'")
        reasoning = _CALCULATOR_NOTE.sub("", reasoning).strip()
    else:
        reasoning = solution.strip()
        explicit = record.get("answer")
        answer = explicit if isinstance(explicit, str) and explicit.strip() else last_boxed(solution) or ""
        if not answer.strip():
            raise ValueError(
                f"{where}: no final answer: 'solution' has no \\boxed{{}} and there is no 'answer'"
            )
    canonical = " ".join(question.split())
    return Problem(
        style, canonical, answer.strip(), {"question": question, "reasoning": reasoning, "line": number}
    )


def load_jsonl(path: str | Path, style: Style) -> list[Problem]:
    """All records of a GSM8K- or MATH-style JSONL file (blank lines skipped)."""
    if style not in STYLES:
        raise ValueError(f"unknown dataset style {style!r}; expected one of {', '.join(STYLES)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found")
    problems = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                problems.append(_record(path, number, line, style))
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems


class FileTask(Task):
    """A benchmark file as a Task: prompts, reference solutions and a math-verify reward."""

    def __init__(self, path: str | Path, style: Style, split: Split | None = None) -> None:
        self.path = Path(path)
        self.name = f"{style}:{self.path}"
        self.file_split = split
        self.problems = load_jsonl(self.path, style)

    def problems_in(self, split: Split) -> list[Problem]:
        if self.file_split is not None:
            return self.problems if split == self.file_split else []
        return [p for p in self.problems if split_of(p.canonical) == split]

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        """A random record; files carry no difficulty knob, so `difficulty` is ignored."""
        return rng.choice(self.problems)

    def sample(self, seed: int, difficulty: int = 1, split: Split = "train") -> Iterator[Problem]:
        """The split's records in a fresh shuffled order each epoch, endlessly."""
        pool = self.problems_in(split)
        if not pool:
            raise ValueError(
                f"{self.path} has no {split!r} records (file split: {self.file_split or 'by hash'})"
            )
        rng = random.Random(f"{self.name}:{seed}:{split}")
        while True:
            yield from rng.sample(pool, len(pool))

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return str(problem.data["question"])

    def solution(self, problem: Problem, lang: str = "en") -> str:
        return f"{problem.data['reasoning']}\n<answer>{problem.answer}</answer>"

    def score(self, problem: Problem, completion: str) -> float:
        return 1.0 if answers_match(extract_answer(completion), problem.answer) else 0.0
