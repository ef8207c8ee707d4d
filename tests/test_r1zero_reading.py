"""The operand-reading probe: it reads exactly the operand digits of column lines, and a model that
never learned to copy them scores low."""

from __future__ import annotations

import random

import pytest

from tests.fixtures import eval_tokenizer, tiny_model_dir
from tinyseek.r1zero.reading import _COLUMN_OPERANDS, operand_reading
from tinyseek.tasks import get_task
from tinyseek.train.documents import TaskSpec, task_documents


def test_the_pattern_takes_each_column_line_operands_and_nothing_else():
    task = get_task("addition")
    problem = task.make(random.Random(0), 0)
    trace = task.trace(problem, "en", 1.0, 1.0, rng=random.Random(3))  # slips and a check: restated questions
    a, b = (int(n) for n in task.prompt(problem).removeprefix("What is ").rstrip("?").split("+"))
    pairs = [(int(m.group(1)), int(m.group(2))) for m in _COLUMN_OPERANDS.finditer(trace.reasoning)]
    assert pairs and len(pairs) % 2 == 0 and "What is" in trace.reasoning
    assert set(pairs) == {(a % 10, b % 10), (a // 10, b // 10)}
    multiplication = get_task("multiplication")
    spec = TaskSpec(names=("multiplication",), difficulty=0)
    document = next(task_documents(spec, 0, "validation"))
    found = [m.group(0).split(": ")[1] for m in _COLUMN_OPERANDS.finditer(document.completion)]
    assert len(found) == len(multiplication.columns(multiplication.make(random.Random(0), 0)))
    assert all("*" in f for f in found)


def test_an_untrained_model_does_not_read(tmp_path):
    families = ["addition", "multiplication"]
    model_dir = tiny_model_dir(tmp_path, eval_tokenizer(tuple(families)))
    shares = operand_reading(model_dir, families, seed=0, difficulty=0, problems=5)
    assert set(shares) == {"addition", "multiplication"}
    assert all(share < 0.5 for share in shares.values())


def test_bad_problem_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="problems = 0"):
        operand_reading(tmp_path, ["addition"], seed=0, difficulty=0, problems=0)
