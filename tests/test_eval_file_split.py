"""A benchmark file obeys the split training uses: `tinyseek grpo --task gsm8k:F` trains on the hash-train
part of F, and `tinyseek eval --task gsm8k:F --split test` must never score one of those problems.
The problems are compared by their text, as the report and the training stream record them.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import grpo_policy_dir
from tinyseek.cli import main
from tinyseek.eval.problems import task_problems
from tinyseek.tasks import FileTask, Problem, get_task

RECORDS = 120


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GSM8K-style file of distinct addition questions (characters the tiny policy's tokenizer knows)."""
    task = get_task("addition")
    seen: dict[str, str] = {}
    for problem in itertools.chain(task.sample(1, 1, "train"), task.sample(1, 1, "test")):
        seen.setdefault(task.prompt(problem), problem.answer)
        if len(seen) == RECORDS:
            break
    path = tmp_path_factory.mktemp("bench") / "gsm8k.jsonl"
    lines = [json.dumps({"question": q, "answer": f"Add the columns. #### {a}"}) for q, a in seen.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def question_text(canonical: str) -> str:
    return " ".join(canonical.split())


def test_eval_split_test_never_scores_a_problem_grpo_trained_on(
    benchmark: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drawn: set[str] = set()
    original = FileTask.sample

    def recording(self: FileTask, seed: int, difficulty: int = 1, split: str = "train") -> Iterator[Problem]:
        for problem in original(self, seed, difficulty, split):  # type: ignore[arg-type]
            drawn.add(question_text(problem.canonical))
            yield problem

    monkeypatch.setattr(FileTask, "sample", recording)
    policy = grpo_policy_dir(tmp_path / "policy")
    task = f"gsm8k:{benchmark}"
    argv = ["grpo", "--model", str(policy), "--run-dir", str(tmp_path / "run"), "--task", task,
            "--max-steps", "2", "--group-size", "2", "--prompts-per-step", "8", "--max-new-tokens", "4",
            "--eval-every", "0", "--rewards", "accuracy=1", "--no-tensorboard", "--json"]  # fmt: skip
    assert main(argv) == 0
    final_model = json.loads(capsys.readouterr().out)["final_model"]
    assert len(drawn) >= 8, "GRPO should have drawn its prompts from the file"

    report_path = tmp_path / "eval.json"
    argv = ["eval", "--model", final_model, "--task", task, "--split", "test", "-k", "1",
            "--max-tokens", "2", "--out", str(report_path), "--json"]  # fmt: skip
    assert main(argv) == 0
    scored = {question_text(r["canonical"]) for r in json.loads(report_path.read_text())["records"]}
    assert scored, "the test split of the file should not be empty"
    assert not scored & drawn, f"eval --split test scored {len(scored & drawn)} problems GRPO trained on"
    all_questions = {
        question_text(json.loads(line)["question"]) for line in benchmark.read_text().splitlines()
    }
    assert scored < all_questions


def test_split_all_scores_the_whole_file_and_says_so(
    benchmark: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = FileTask(benchmark, "gsm8k")
    with caplog.at_level(logging.INFO, logger="tinyseek.eval.problems"):
        whole = task_problems(task, split="all")
    assert len(whole.problems) == RECORDS
    assert any("whole file" in r.getMessage() and "train" in r.getMessage() for r in caplog.records)
    train = {p.canonical for p in task_problems(task, split="train").problems}
    test = {p.canonical for p in task_problems(task, split="test").problems}
    validation = {p.canonical for p in task_problems(task, split="validation").problems}
    assert train and test and not train & test and not validation & (train | test)
    assert len(train) + len(validation) + len(test) == RECORDS


def test_split_all_is_refused_for_procedural_tasks() -> None:
    with pytest.raises(ValueError, match="all"):
        task_problems("addition", n=2, split="all")  # type: ignore[arg-type]
