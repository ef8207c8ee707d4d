"""Rejection sampling: only verified-correct, well-formed, distinct traces are kept, as SFT-ready JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import markov_model_dir
from tinyseek.cli import main
from tinyseek.eval.problems import data_source, task_problems
from tinyseek.eval.rejection import select_traces, write_traces
from tinyseek.eval.runner import ProblemRecord, Sample, evaluate
from tinyseek.inference.llm import LLM
from tinyseek.tasks.completion import parse_completion, render_prompt


def sums_file(path: Path, style: str) -> Path:
    """Six sums equal to 7 (the Markov model's favourite answer) and two that are not."""
    pairs = [(i, 7 - i) for i in range(1, 7)] + [(1, 2), (4, 4)]
    if style == "math":
        rows = [{"problem": f"What is {a}+{b}?", "solution": f"\\boxed{{{a + b}}}"} for a, b in pairs]
    else:
        rows = [
            {"question": f"What is {a}+{b}?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"} for a, b in pairs
        ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def markov_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return markov_model_dir(tmp_path_factory.mktemp("markov"))


def _sample(text: str, correct: bool, well_formed: bool = True) -> Sample:
    return Sample(text, text[-1], correct, well_formed, 1, 2, "stop")


def test_select_keeps_correct_well_formed_distinct_up_to_the_cap() -> None:
    a = ProblemRecord(
        "t", "a", "1", "en", "P1",
        [_sample("r1", True), _sample("r1", True), _sample("q1", True), _sample("z1", True, False),
         _sample("r2", False), _sample("s1", True)],
    )  # fmt: skip
    b = ProblemRecord("t", "b", "2", "en", "P2", [_sample("r3", False), _sample("x2", True, False)])
    traces, summary = select_traces([a, b], template="chat")
    assert [t["completion"] for t in traces] == ["r1", "q1", "s1"]
    assert all(t["prompt"] == "P1" and t["answer"] == "1" and t["template"] == "chat" for t in traces)
    assert summary.to_json() == {
        "prompts": 2, "samples": 8, "prompts_kept": 1, "samples_kept": 3, "correct": 6,
        "well_formed": 6, "accepted": 4, "duplicates": 1,
    }  # fmt: skip
    capped, capped_summary = select_traces([a, b], max_per_prompt=2, template="chat")
    assert [t["completion"] for t in capped] == ["r1", "q1"] and capped_summary.samples_kept == 2
    with pytest.raises(ValueError, match="max_per_prompt = 0"):
        select_traces([a], max_per_prompt=0, template="chat")
    with pytest.raises(ValueError, match="template"):
        select_traces([a])


def test_kept_traces_verify_and_their_prompt_reencodes_exactly(markov_dir: Path, tmp_path: Path) -> None:
    llm = LLM(markov_dir)
    task = data_source(sums_file(tmp_path / "sums.jsonl", "math"))
    problems = task_problems(task, split="all")
    report = evaluate(llm, problems, k=6, max_tokens=40, template="r1zero", seed=2)
    traces, summary = select_traces(report)
    assert summary.samples == 48 and summary.well_formed == 48
    assert summary.duplicates > 0 and summary.samples_kept == summary.accepted - summary.duplicates > 0
    by_canonical = {p.canonical: p for p in problems.problems}
    for row in traces:
        problem = by_canonical[row["canonical"]]
        assert task.score(problem, row["completion"]) == 1.0
        assert parse_completion(row["completion"], "think_answer").well_formed
        assert llm.tokenizer is not None
        _, ids = render_prompt(llm.tokenizer, task.prompt(problem), "r1zero")
        assert llm.tokenizer.encode(row["prompt"], add_special_tokens=False) == ids
    per_prompt = [[t["completion"] for t in traces if t["canonical"] == c] for c in by_canonical]
    assert all(len(texts) == len(set(texts)) for texts in per_prompt)
    out = tmp_path / "traces.jsonl"
    write_traces(out, traces)
    assert [json.loads(line) for line in out.read_text().splitlines()] == traces


def test_cli_writes_sft_jsonl_atomically(
    markov_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sft" / "traces.jsonl"
    data = sums_file(tmp_path / "sums.jsonl", "gsm8k")
    argv = ["rejection-sample", "--model", str(markov_dir), "--data", str(data), "-k", "6"]
    argv += ["--max-tokens", "40", "--template", "chat", "--max-per-prompt", "1", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == summary["samples_kept"] == summary["prompts_kept"] > 0
    # The file's train part (the hash split training uses): 6 samples for each of its problems.
    train = task_problems(data_source(data), split="train").problems
    assert (
        0 < len(train) < 8 and summary["samples"] == 6 * len(train) and summary["eval"]["settings"]["k"] == 6
    )
    assert len({r["canonical"] for r in rows}) == len(rows)  # --max-per-prompt 1
    for row in rows:
        assert row["prompt"].endswith("<｜Assistant｜><think>\n") and row["model_answer"] == row["answer"]
        assert {"prompt", "completion", "task", "answer"} <= set(row)
    assert sorted(p.name for p in out.parent.iterdir()) == ["traces.jsonl"]  # no temporary file left
    assert main([*argv[:-3], "--out", str(out), "-k", "0"]) == 2
    assert "-k 0" in capsys.readouterr().err
    assert (
        main(
            [
                "rejection-sample",
                "--model",
                str(markov_dir),
                "--data",
                str(tmp_path / "no.jsonl"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "no.jsonl not found" in capsys.readouterr().err
