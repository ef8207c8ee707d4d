"""`tinyseek.eval.runner` / `problems` and `tinyseek eval`: exact metrics on a model whose outputs we set.

The Markov model (tests/fixtures.py) writes `<think>x..</think><answer>D</answer>` with D = 7 half
the time, so every sample is well formed and its correctness is known from its text alone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures import markov_model_dir, random_model_dir
from tinyseek.chat_template import r1_zero_prompt
from tinyseek.cli import main
from tinyseek.eval.problems import data_source, detect_style, problem_sets, task_problems
from tinyseek.eval.runner import ProblemRecord, Sample, evaluate, family_metrics, vote_key
from tinyseek.inference.llm import LLM
from tinyseek.tasks import get_task

ANSWER = re.compile(r"<answer>(.*)</answer>$")


@pytest.fixture(scope="module")
def markov(tmp_path_factory: pytest.TempPathFactory) -> LLM:
    return LLM(markov_model_dir(tmp_path_factory.mktemp("markov")))


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_model_dir(tmp_path_factory.mktemp("random"))


def _sample(
    answer: str | None,
    correct: bool,
    well_formed: bool = True,
    finish: str = "stop",
    language: float | None = None,
) -> Sample:
    return Sample(f"<answer>{answer}</answer>", answer, correct, well_formed, 3, 5, finish, language)


def test_family_metrics_on_hand_made_samples() -> None:
    records = [
        ProblemRecord(
            "t", "a", "1/2", "en", "p",
            [_sample("0.5", True), _sample("1/2", True), _sample("3", False), _sample(None, False, False, "length")],
            greedy=_sample("1/2", True),
        ),
        ProblemRecord(
            "t", "b", "4", "en", "p",
            [_sample("5", False, language=1.0), _sample("5", False, language=0.5), _sample("4", True),
             _sample("4", True, False)],
            greedy=_sample("5", False),
        ),
    ]  # fmt: skip
    metrics = family_metrics(records, k=4)
    assert metrics["pass@1"] == pytest.approx((2 / 4 + 2 / 4) / 2)
    assert metrics["pass@4"] == 1.0
    # Problem a: 0.5 and 1/2 vote together (2 votes) and win; problem b: 5 and 4 tie, 5 came first.
    assert metrics["cons@4"] == 0.5
    assert metrics["format_rate"] == 6 / 8
    assert metrics["truncated"] == 1 / 8
    assert metrics["greedy_accuracy"] == 0.5
    assert metrics["reasoning_tokens"] == 3 and metrics["completion_tokens"] == 5
    assert metrics["language_consistency"] == 0.75  # mean over the samples with language evidence
    assert "language_consistency" not in family_metrics(records[:1], k=4)
    assert vote_key(" 0.50 ") == vote_key("\\frac{1}{2}") == "1/2" and vote_key(" x+1 ") == "x+1"


@pytest.mark.parametrize("template", ["r1zero", "chat"])
def test_markov_model_metrics_are_exact(markov: LLM, template: str) -> None:
    sets = problem_sets(["gcd"], n=12)
    report = evaluate(markov, sets, k=4, max_tokens=40, template=template, seed=1, greedy=True)
    records = report.records
    assert len(records) == 12 and all(len(r.samples) == 4 for r in records)
    task = get_task("gcd")
    for record, problem in zip(records, sets[0].problems, strict=True):
        assert record.canonical == problem.canonical and record.reference == problem.answer
        shown = task.prompt(problem)
        assert (r1_zero_prompt(shown) if template == "r1zero" else f"<｜User｜>{shown}") in record.prompt
        for sample in [*record.samples, record.greedy]:
            assert sample is not None
            opening = "<think>" if template == "r1zero" else ""
            assert re.fullmatch(opening + r"x+</think><answer>\d+</answer>", sample.text), sample.text
            match = ANSWER.search(sample.text)
            assert match and sample.answer == match[1]
            assert sample.correct == (match[1] == problem.answer)
            assert sample.well_formed and sample.finish_reason == "stop"
        assert record.greedy is not None and record.greedy.text == opening + "x</think><answer>7</answer>"
        assert record.greedy.reasoning_tokens == 1
    overall = report.overall
    flat = [s for r in records for s in r.samples]
    assert overall["pass@1"] == pytest.approx(sum(s.correct for s in flat) / len(flat))
    # most_common keeps first-seen order among equal counts: the earliest answer wins a tie.
    votes = [Counter(s.answer for s in r.samples).most_common(1)[0][0] for r in records]
    assert overall["cons@4"] == pytest.approx(
        sum(v == r.reference for v, r in zip(votes, records, strict=True)) / len(records)
    )
    assert overall["format_rate"] == 1.0 and overall["truncated"] == 0.0
    assert overall["greedy_accuracy"] == sum(r.reference == "7" for r in records) / 12
    assert 0 < overall["greedy_accuracy"] < 1  # the check is not vacuous
    assert report.families == {"gcd": overall}
    assert report.settings["template"] == template


def test_random_model_samples_are_reproducible_and_independent_of_the_batch(random_dir: Path) -> None:
    llm = LLM(random_dir)
    gcd = task_problems("gcd", n=3)
    both = [task_problems("addition", n=3), gcd]
    first = evaluate(llm, both, k=3, max_tokens=12, seed=5)
    again = evaluate(llm, [gcd], k=3, max_tokens=12, seed=5)
    other = evaluate(llm, [gcd], k=3, max_tokens=12, seed=6)

    def texts(report, task):
        return [[s.text for s in r.samples] for r in report.records if r.task == task]

    assert texts(first, "gcd") == texts(again, "gcd")
    assert texts(first, "gcd") != texts(other, "gcd")
    assert set(first.families) == {"addition", "gcd"} and first.overall["problems"] == 6
    assert first.families["gcd"]["samples"] == 9
    assert first.settings["template"] == "chat"  # the tokenizer carries R1's chat template
    rows = first.to_json(include_records=True)
    assert {"settings", "overall", "families", "records", "tokens_per_second"} <= set(rows)
    assert (
        json.loads(json.dumps(rows))["records"][0]["samples"][0]["text"] == first.records[0].samples[0].text
    )
    table = first.markdown()
    assert "| addition |" in table and "| all |" in table and "cons@3" in table


def test_problem_sets_are_distinct_and_files_are_whole(tmp_path: Path) -> None:
    problems = task_problems("linear", n=40, seed=2).problems
    assert len({p.canonical for p in problems}) == 40
    assert task_problems("linear", n=40, seed=2).problems == problems
    data = tmp_path / "bench.jsonl"
    rows = [{"problem": f"What is {i}+1?", "solution": f"\\boxed{{{i + 1}}}"} for i in range(5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert detect_style(data) == "math"
    whole = task_problems(data_source(data), split="all")
    assert [p.answer for p in whole.problems] == ["1", "2", "3", "4", "5"]  # every record, in file order
    assert len(task_problems(f"math:{data}", n=2, split="all").problems) == 2


def test_bad_inputs_name_the_value(tmp_path: Path, markov: LLM) -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        problem_sets(["nope"], n=2)
    with pytest.raises(ValueError, match="k = 0"):
        evaluate(markov, task_problems("gcd", n=1), k=0)
    with pytest.raises(ValueError, match="unknown template 'plain'"):
        evaluate(markov, task_problems("gcd", n=1), template="plain")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown language 'de'"):
        task_problems("gcd", n=1, lang="de")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        data_source(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1?", "answer": "#### 2"}\n\n{not json\n')
    with pytest.raises(ValueError, match=f"{bad}:3: invalid JSON"):
        data_source(bad)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"text": "hi"}\n')
    with pytest.raises(ValueError, match=f"{odd}:1: cannot tell the dataset style"):
        data_source(odd)


def test_eval_cli_json_and_out_file(
    random_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = ["--model", str(random_dir), "--task", "gcd,addition", "--n", "2", "-k", "2", "--max-tokens", "8"]
    assert main(["eval", *argv, "--greedy", "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["families"]) == ["gcd", "addition"]
    assert report["overall"]["samples"] == 8 and "greedy_accuracy" in report["overall"]
    saved = json.loads(out.read_text())
    assert len(saved["records"]) == 4 and all(
        len(r["samples"]) == 2 and r["greedy"] for r in saved["records"]
    )
    assert main(["eval", "--model", str(random_dir), "--task", "gcd", "-k", "0"]) == 2
    assert "error: -k 0: expected at least 1" in capsys.readouterr().err
    assert main(["eval", "--model", str(random_dir)]) == 2
    assert "--task NAME" in capsys.readouterr().err
