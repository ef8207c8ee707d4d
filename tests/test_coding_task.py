"""Coding tasks: reproducible problems, worked solutions that pass, wrong answers that fail."""

from __future__ import annotations

import json
import random

import pytest

from tinyseek.sandbox import sandbox_problem
from tinyseek.tasks.base import LANGUAGES, split_of
from tinyseek.tasks.coding import TEMPLATES, CodingTask, extract_code, reference_function

needs_sandbox = pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox: {sandbox_problem()}")


@pytest.fixture(scope="module")
def task() -> CodingTask:
    return CodingTask(workers=2)


def one_problem_per_template(task: CodingTask, seed: int = 0):
    rng = random.Random(seed)
    return [task.build(t.name, t.draw_params(rng)) for t in TEMPLATES]


def near_miss(task: CodingTask, problem, rng: random.Random) -> tuple[str, float]:
    """Reference code of the same template with other parameters, and the share of tests it passes."""
    template = next(t for t in TEMPLATES if t.name == problem.data["template"])
    while True:
        params = template.draw_params(rng)
        source = template.source(params)
        other = reference_function(source, template.function)
        outputs = [json.dumps(other(*args)) for args in problem.data["inputs"]]
        share = sum(o == json.dumps(e) for o, e in zip(outputs, problem.data["expected"], strict=True)) / len(
            outputs
        )
        if share < 1.0:
            return source, share


def fenced(code: str) -> str:
    return f"Here it is.\n```python\n{code}```\n"


@needs_sandbox
def test_worked_solutions_pass_and_wrong_answers_fail_on_every_template(task):
    problems = one_problem_per_template(task)
    rng = random.Random(1)
    misses = [near_miss(task, p, rng) for p in problems]
    completions = [task.solution(p, LANGUAGES[i % len(LANGUAGES)]) for i, p in enumerate(problems)]
    completions += [fenced(code) for code, _ in misses]
    completions += [fenced(f"def {p.data['function']}(*args):\n    return None\n") for p in problems]
    scores = task.score_many(problems * 3, completions)
    n = len(problems)
    assert scores[:n] == [1.0] * n
    assert scores[n : 2 * n] == pytest.approx([share for _, share in misses])
    assert all(s < 1.0 for s in scores[n : 2 * n])
    assert scores[2 * n :] == [0.0] * n


@needs_sandbox
def test_all_or_nothing_gives_zero_for_partial_answers():
    strict = CodingTask(all_or_nothing=True)
    problem = strict.build("count_multiples", {"a": 3, "b": 5})
    partly_right = "def count_multiples(lo, hi):\n    return 0 if lo > hi else -1\n"
    assert CodingTask().score(problem, fenced(partly_right)) == pytest.approx(0.1)  # only the empty range
    assert strict.score(problem, fenced(partly_right)) == 0.0
    assert strict.score(problem, strict.solution(problem)) == 1.0


@needs_sandbox
def test_only_the_last_python_block_of_the_answer_counts(task):
    problem = task.build("caesar", {"shift": 3})
    right = problem.answer
    wrong = "def caesar(s):\n    return s\n"
    assert task.score(problem, fenced(wrong) + fenced(right)) == 1.0
    assert task.score(problem, fenced(right) + fenced(wrong)) < 1.0
    assert task.score(problem, f"<think>{fenced(right)}</think>no code here") == 0.0
    assert task.score(problem, f"<think>{fenced(wrong)}</think>{fenced(right)}") == 1.0


def test_extract_code():
    assert extract_code("no code") is None
    assert extract_code("```\nx = 1\n```") is None  # not marked as Python
    assert extract_code("```py\nx = 1\n```\n```python3\ny = 2\n```") == "y = 2\n"
    assert extract_code("```python\nunterminated") is None


def test_missing_code_scores_zero_without_running(task):
    problem = task.build("fold", {"op": "gcd", "modulus": 0})
    assert task.score(problem, "The answer is math.gcd.") == 0.0


def test_problems_are_reproducible_varied_and_split_by_hash(task):
    first = [p.canonical for _, p in zip(range(30), task.sample(seed=3, difficulty=3), strict=False)]
    again = [p.canonical for _, p in zip(range(30), task.sample(seed=3, difficulty=3), strict=False)]
    assert first == again
    rng = random.Random(0)
    drawn = [task.make(rng, 3) for _ in range(400)]
    assert len({p.canonical for p in drawn}) > 200
    assert {p.data["template"] for p in drawn} == {t.name for t in TEMPLATES}
    test_items = [p for _, p in zip(range(20), task.sample(seed=0, difficulty=3, split="test"), strict=False)]
    assert all(split_of(p.canonical) == "test" for p in test_items)
    assert not {p.canonical for p in test_items} & set(first)


def test_difficulty_selects_templates(task):
    rng = random.Random(0)
    easy = {task.make(rng, 1).data["template"] for _ in range(200)}
    assert easy == {t.name for t in TEMPLATES if t.level == 1}
    with pytest.raises(ValueError, match="difficulty"):
        task.make(rng, 0)


def test_hidden_tests_are_not_in_the_prompt(task):
    for problem in one_problem_per_template(task, seed=5):
        for lang in LANGUAGES:
            text = task.prompt(problem, lang)
            assert f"`{problem.data['function']}(" in text
            assert "```python" in text
        assert json.dumps(problem.data["inputs"]) not in task.prompt(problem)
    with pytest.raises(ValueError, match="language"):
        task.prompt(problem, "de")
    with pytest.raises(ValueError, match="template"):
        task.build("sorting", {})


def test_expected_values_come_from_the_reference(task):
    problem = task.build("digit_power_sum", {"base": 10, "power": 1})
    assert problem.data["inputs"][:3] == [[0], [9], [10]]
    assert problem.data["expected"][:3] == [0, 9, 1]
    assert all(
        e == sum(map(int, str(n)))
        for (n,), e in zip(problem.data["inputs"], problem.data["expected"], strict=True)
    )
