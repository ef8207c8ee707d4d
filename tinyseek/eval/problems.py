"""Which problems an evaluation (or a rejection-sampling run) poses: `ProblemSet`s from task names or files.

Design choices:
- A procedural family gives `n` *distinct* problems (deduplicated by canonical form) from one split,
  drawn from `task.sample(seed, difficulty, split)`: the same arguments give the same problems on any
  machine. Easy families have few test problems (gcd at difficulty 1 has ~140); when the stream stops
  yielding new ones within a draw budget the set is smaller than asked and a warning says so, rather
  than failing a long pipeline.
- A benchmark file (`gsm8k:PATH`, `math:PATH`, or `data_source(PATH)` with the style detected from the
  first record's fields) obeys the split the way training does: `tinyseek grpo --task gsm8k:F` trains
  on the hash-train part of F, so `split="test"` gives only its hash-test part (a file loaded as one
  split, e.g. a separate test.jsonl, is all of that split). `split="all"` scores the whole file and
  says so in the log, since it includes any problem a model was trained on. Records keep file order
  (the first `n` when `n` is given).
- Problems of several families stay apart (one `ProblemSet` each) so reports can break metrics down
  per family.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinyseek.tasks import FileTask, Problem, Split, Task, get_task
from tinyseek.tasks.base import check_language
from tinyseek.tasks.datasets import STYLES, Style

log = logging.getLogger(__name__)

DRAWS_PER_PROBLEM = 50  # draw budget of a procedural stream, per problem asked for
DEFAULT_PROBLEMS = 500  # per procedural family when n is not given (R1-Zero evaluates >= 500)
EvalSplit = Split | Literal["all"]  # "all": a benchmark file whole, train part included


@dataclass(frozen=True)
class ProblemSet:
    """Problems of one task family, the task that renders and verifies them, and the prompt language."""

    task: Task
    problems: tuple[Problem, ...]
    lang: str = "en"

    @property
    def name(self) -> str:
        return self.task.name


def task_problems(
    task: Task | str,
    n: int | None = None,
    seed: int = 0,
    difficulty: int = 1,
    split: EvalSplit = "test",
    lang: str = "en",
) -> ProblemSet:
    """`n` distinct problems of a task (a Task or a `get_task` name); a file task gives its records of
    the split (`"all"`: every record).

    `n=None` means all of a file's split, or `DEFAULT_PROBLEMS` of a procedural family.
    """
    if n is not None and n < 1:
        raise ValueError(f"n = {n}: expected at least 1 problem per task (or None for a whole file)")
    check_language(lang)
    task = get_task(task) if isinstance(task, str) else task
    if isinstance(task, FileTask):
        return _file_problems(task, n, split, lang)
    if split == "all":
        raise ValueError(
            f"split 'all' applies to benchmark files only; task {task.name!r} is procedural: "
            "expected 'train' or 'test'"
        )
    n = DEFAULT_PROBLEMS if n is None else n
    seen: dict[str, Problem] = {}
    budget = DRAWS_PER_PROBLEM * n
    for draws, problem in enumerate(task.sample(seed, difficulty, split), start=1):
        seen.setdefault(problem.canonical, problem)
        if len(seen) == n or draws >= budget:
            break
    if len(seen) < n:
        log.warning(
            "task %s: only %d distinct %s problems at difficulty %d after %d draws (asked for %d)",
            task.name, len(seen), split, difficulty, budget, n,
        )  # fmt: skip
    return ProblemSet(task, tuple(seen.values()), lang)


def _file_problems(task: FileTask, n: int | None, split: EvalSplit, lang: str) -> ProblemSet:
    """A file's records of one split (the hash split training uses), or all of them, said aloud."""
    if split == "all":
        records = task.problems
        log.info(
            "%s: scoring the whole file (%d records), its train split included: scores may count "
            "problems a model was trained on (--split test scores only the held-out part)",
            task.path, len(records),
        )  # fmt: skip
    else:
        records = task.problems_in(split)
        if not records:
            raise ValueError(
                f"{task.path} has no {split!r} records (file split: {task.file_split or 'by hash'}); "
                "use split 'all' to score the whole file"
            )
        how = f"the file is the {task.file_split} split" if task.file_split else "hash of the question"
        log.info(
            "%s: scoring the %s split, %d of %d records (%s, as training splits it)",
            task.path, split, len(records), len(task.problems), how,
        )  # fmt: skip
    return ProblemSet(task, tuple(records[:n] if n is not None else records), lang)


def detect_style(path: str | Path) -> Style:
    """GSM8K or MATH style, from the fields of the file's first record."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: invalid JSON ({err.msg})") from err
            if isinstance(record, dict) and "question" in record:
                return "gsm8k"
            if isinstance(record, dict) and "problem" in record:
                return "math"
            fields = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"{path}:{number}: cannot tell the dataset style from {fields}; expected a 'question' "
                "field (gsm8k style) or a 'problem' field (math style)"
            )
    raise ValueError(f"{path}: no records")


def data_source(path: str | Path, style: Style | None = None) -> FileTask:
    """A JSONL benchmark file as a task, its style given or detected."""
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown dataset style {style!r}; expected one of {', '.join(STYLES)}")
    return FileTask(path, style or detect_style(path))


def problem_sets(
    tasks: Sequence[Task | str],
    n: int | None = None,
    seed: int = 0,
    difficulty: int = 1,
    split: EvalSplit = "test",
    lang: str = "en",
) -> list[ProblemSet]:
    """One `ProblemSet` per task, all drawn with the same arguments."""
    if not tasks:
        raise ValueError("no tasks given; expected at least one task name or data file")
    return [task_problems(t, n, seed, difficulty, split, lang) for t in tasks]
