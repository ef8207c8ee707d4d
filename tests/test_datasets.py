"""Benchmark files as tasks: GSM8K/MATH JSONL parsing, math-verify scoring, clear errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tinyseek.tasks import FileTask, get_task, split_of
from tinyseek.tasks.datasets import answers_match, load_jsonl

GSM8K = [
    {
        "question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
        "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nTotal 48+24 = <<48+24=72>>72.\n#### 72",
    },
    {"question": "A shop sells 1,200 pens a day. How many in 2 days?", "answer": "1200*2=2400\n#### 2,400"},
    {"question": "What is 7 minus 10?", "answer": "7-10=-3\n#### -3"},
]
MATH = [
    {
        "problem": "Compute $\\frac{2}{4}$.",
        "solution": "We reduce: $\\boxed{\\frac{1}{2}}$.",
        "level": "Level 1",
    },
    {"problem": "Simplify $\\sqrt{8}$.", "solution": "$\\sqrt{8} = \\boxed{2\\sqrt{2}}$"},
    {"problem": "Expand $(x+1)^2$.", "solution": "Done.", "answer": "x^2+2x+1"},
]


def write_jsonl(path: Path, rows: list[dict[str, str]], extra: str = "") -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + extra, encoding="utf-8")
    return path


def test_gsm8k_records(tmp_path: Path) -> None:
    task = get_task(f"gsm8k:{write_jsonl(tmp_path / 'g.jsonl', GSM8K)}")
    assert isinstance(task, FileTask)
    first, pens, negative = task.problems
    assert (first.answer, pens.answer, negative.answer) == ("72", "2400", "-3")
    assert "<<" not in task.solution(first) and task.solution(first).endswith("<answer>72</answer>")
    assert task.prompt(first) == GSM8K[0]["question"]
    assert task.score(first, task.solution(first)) == 1.0
    assert task.score(first, "<answer>72.0</answer>") == 1.0
    assert task.score(pens, "so the answer is \\boxed{2,400}") == 1.0
    assert task.score(first, "<answer>71</answer>") == 0.0
    assert task.score(first, "72") == 0.0  # no tag, no box
    assert task.score(negative, "<answer>\u22123</answer>") == 1.0


def test_math_records_use_math_verify(tmp_path: Path) -> None:
    task = get_task(f"math:{write_jsonl(tmp_path / 'm.jsonl', MATH)}")
    half, root, poly = task.problems
    assert (half.answer, root.answer, poly.answer) == ("\\frac{1}{2}", "2\\sqrt{2}", "x^2+2x+1")
    assert task.score(half, "\\boxed{1/2}") == 1.0
    assert task.score(half, "<answer>0.5</answer>") == 1.0
    assert task.score(half, "<answer>1/3</answer>") == 0.0
    assert task.score(root, "<answer>\\sqrt{8}</answer>") == 1.0
    assert task.score(root, "<answer>2\\sqrt{3}</answer>") == 0.0
    assert task.score(poly, "<answer>(x+1)^2</answer>") == 1.0
    assert task.score(poly, "<answer>(x-1)^2</answer>") == 0.0
    for problem in task.problems:
        assert task.score(problem, task.solution(problem)) == 1.0


def test_answers_match_edge_cases() -> None:
    assert answers_match("0.5", "\\frac{1}{2}") and answers_match(" 007", "7")
    assert not answers_match(None, "7") and not answers_match("  ", "7") and not answers_match("8", "7")


def test_splits_by_hash_or_by_file(tmp_path: Path) -> None:
    rows = [{"question": f"What is {i} + 1?", "answer": f"#### {i + 1}"} for i in range(200)]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    task = FileTask(path, "gsm8k")
    test = list(itertools.islice(task.sample(seed=0, split="test"), 100))
    assert all(split_of(p.canonical) == "test" for p in test)
    epoch = len(task.problems_in("test"))
    assert 0 < epoch < 60 and len({p.canonical for p in test[:epoch]}) == epoch  # each once per epoch
    held_out = FileTask(path, "gsm8k", split="test")
    assert len(list(itertools.islice(held_out.sample(seed=0, split="test"), 200))) == 200
    with pytest.raises(ValueError, match="no 'train' records"):
        next(held_out.sample(seed=0, split="train"))


@pytest.mark.parametrize(
    ("style", "content", "message"),
    [
        ("gsm8k", '{"question": "q", "answer": "#### 1"}\n{not json}\n', r"bad\.jsonl:2: invalid JSON"),
        ("gsm8k", '\n{"question": "q"}\n', r"bad\.jsonl:2: missing or non-string field 'answer'"),
        ("gsm8k", '{"question": "q", "answer": "no marker"}\n', r"bad\.jsonl:1: .*'#### <final answer>'"),
        ("math", '{"problem": "p", "solution": "no box"}\n', r"bad\.jsonl:1: no final answer"),
        (
            "math",
            '{"question": "q", "answer": "1"}\n',
            r"bad\.jsonl:1: missing or non-string field 'problem'",
        ),
        ("math", "[1, 2]\n", r"bad\.jsonl:1: expected a JSON object"),
        ("math", "\n\n", r"bad\.jsonl: no records"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, style: str, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_jsonl(path, style)  # type: ignore[arg-type]


def test_bad_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        get_task(f"gsm8k:{tmp_path / 'missing.jsonl'}")
    with pytest.raises(ValueError, match="unknown dataset style 'csv'"):
        load_jsonl(tmp_path / "x.jsonl", "csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown task 'csv:x'"):
        get_task("csv:x")
