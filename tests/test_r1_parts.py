"""The pieces `tinyseek r1` adds: the uneven, code-switched corpus, multilingual GRPO prompts, the
traces' summary line, and the per-problem measures (scores, intervals, FLOPs)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from tinyseek.r1.measure import arm_metrics, grpo_flops, paired_difference, problem_scores
from tinyseek.r1.report import _premise_text
from tinyseek.r1.traces import with_summary
from tinyseek.r1zero.intervals import bootstrap_mean
from tinyseek.tasks.language import language_share
from tinyseek.train.documents import TaskSpec, language_cycle, task_documents


def test_language_cycle_spreads_each_language_by_its_weight():
    cycle = language_cycle(("en", "fr", "zh"), (12, 5, 3))
    assert Counter(cycle) == {"en": 12, "fr": 5, "zh": 3}
    assert cycle[:3] == ["en", "fr", "zh"] or cycle[0] == "en"
    assert language_cycle(("en", "fr")) == ["en", "fr"]  # no weights: one each, in order


def test_corpus_mix_and_code_switching():
    spec = TaskSpec(
        ("addition",), langs=("en", "fr", "zh"), lang_weights=(3, 1, 1), code_switch_rate=0.5, difficulty=0
    )
    docs = list(itertools.islice(task_documents(spec, seed=0), 500))
    prompts = Counter("Combien" in d.prompt and "fr" or "等于" in d.prompt and "zh" or "en" for d in docs)
    assert prompts == {"en": 300, "fr": 100, "zh": 100}
    fr = [d for d in docs if "Combien" in d.prompt]
    switched = [d for d in fr if (language_share(d.completion, "fr") or 0.0) < 0.5]
    assert 0.35 < len(switched) / len(fr) < 0.65  # worked in English under a French question
    assert all(language_share(d.completion, "en") == 1.0 for d in switched)
    plain = TaskSpec(("addition",), langs=("en", "fr", "zh"), difficulty=0)
    # The English stream is the same whatever the weights and the rate.
    english = [d for d in itertools.islice(task_documents(plain, seed=0), 300) if "What is" in d.prompt]
    assert [d.completion for d in english[:50]] == [d.completion for d in docs if "What is" in d.prompt][:50]
    with pytest.raises(ValueError, match="lang_weights"):
        TaskSpec(("addition",), langs=("en", "fr"), lang_weights=(1,))
    with pytest.raises(ValueError, match="code_switch_rate"):
        TaskSpec(("addition",), code_switch_rate=1.5)


def test_grpo_prompts_take_turns_over_languages():
    from tinyseek.rl.prompts import PromptSource
    from tinyseek.tasks import get_task

    class Chars:
        def encode(self, text, add_special_tokens=True):
            return [ord(c) % 256 for c in text]

    source = PromptSource(
        [get_task("addition"), get_task("multiplication")], Chars(), lang="en,fr,zh", difficulty=0
    )
    items = source.take(12)
    assert [i.lang for i in items] == ["en", "en", "fr", "fr", "zh", "zh"] * 2
    assert [i.task.name for i in items[:2]] == ["addition", "multiplication"]
    with pytest.raises(ValueError, match="unknown language"):
        PromptSource([get_task("addition")], Chars(), lang="en,de")


def test_summary_line_is_in_the_prompt_language_and_added_once():
    completion = " <think>\n个位：6+4=10，写0，进1 → 0。\n</think>\n<answer>10</answer>"
    once = with_summary(completion, "6+4 等于多少？", "10", "zh")
    assert once.endswith("6+4 等于多少？10。\n</think>\n<answer>10</answer>")
    assert with_summary(once, "6+4 等于多少？", "10", "zh") == once
    assert language_share(once.split("</think>")[0].removeprefix(" <think>"), "zh") == 1.0
    for lang, question in (("en", "What is 1+2?"), ("fr", "Combien font 1+2 ?")):
        line = with_summary(" <think>\nx\n</think>\n<answer>3</answer>", question, "3", lang).split("\n")[2]
        assert line == f"{question} 3." and language_share(line, lang) == 1.0


def _report(lang: str, rows: list[tuple[str, list[bool], list[float | None]]]) -> dict:
    return {
        "records": [
            {
                "lang": lang,
                "task": "addition",
                "canonical": name,
                "greedy": {"correct": correct[0]},
                "samples": [
                    {"correct": c, "well_formed": True, "language": share, "reasoning_tokens": 10}
                    for c, share in zip(correct, shares, strict=True)
                ],
            }
            for name, correct, shares in rows
        ]
    }


def test_problem_scores_metrics_and_paired_difference():
    a = problem_scores(
        _report("fr", [("1+1", [True, False], [1.0, None]), ("2+2", [True, True], [None, None])])
    )
    assert (
        a["fr", "addition", "1+1"]["pass@1"] == 0.5
        and a["fr", "addition", "1+1"]["language_consistency"] == 1.0
    )
    assert a["fr", "addition", "2+2"]["language_consistency"] is None  # no language evidence at all
    figures = arm_metrics(a, ["fr"])
    assert figures["fr"]["pass@1"] == 0.75 and figures["all"]["problems"] == 2
    assert figures["fr"]["language_consistency"] == 1.0 and figures["fr"]["reasoning_length"] == 10
    b = problem_scores(
        _report("fr", [("1+1", [False, False], [0.0, 0.0]), ("2+2", [False, True], [0.0, 0.0])])
    )
    diff = paired_difference(a, b)
    assert diff["difference"] == pytest.approx(0.5) and diff["problems"] == 2
    assert diff["ci95"][0] <= 0.5 <= diff["ci95"][1]
    with pytest.raises(ValueError, match="no problem scored"):
        paired_difference(a, problem_scores(_report("zh", [("1+1", [True], [1.0])])))


def test_bootstrap_mean_brackets_the_mean():
    lo, hi = bootstrap_mean([0.0, 1.0] * 50, seed=3)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert bootstrap_mean([0.25] * 4) == (0.25, 0.25)
    with pytest.raises(ValueError):
        bootstrap_mean([])


def test_grpo_flops_grow_with_tokens(tmp_path):
    from tinyseek.config import ModelConfig

    ModelConfig.preset("tiny").save_pretrained(tmp_path)
    step = {
        "completion_length/mean": 50.0,
        "batch_sequences": 16.0,
        "train_tokens_per_s": 100.0,
        "train_seconds": 2.0,
    }
    one = grpo_flops(tmp_path / "config.json", [step], prompt_tokens=20)
    assert one > 0
    assert grpo_flops(tmp_path / "config.json", [step, step, {"eval/accuracy": 1.0}], 20) == pytest.approx(
        2 * one
    )


def test_the_report_says_whether_the_teacher_was_above_the_rl_only_student():
    above = {"teacher_minus_student_rl_pass@1": {"difference": 0.2, "ci95": [0.1, 0.3]}}
    below = {"teacher_minus_student_rl_pass@1": {"difference": -0.15, "ci95": [-0.2, -0.1]}}
    assert "the paper's premise." in _premise_text(above)[0] and "+20.0 points" in _premise_text(above)[0]
    assert (
        "does not hold" in _premise_text(below)[0]
        and "-15.0 points [-20.0, -10.0]" in _premise_text(below)[0]
    )
