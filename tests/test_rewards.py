"""Rewards on crafted completions: format styles, accuracy through a real Task and math-verify,
language consistency, overlong shaping, and the weighted RewardSet (None handling, logging, errors)."""

from __future__ import annotations

import random

import pytest

from tinyseek.rl import (
    RewardOptions,
    RewardSet,
    accuracy_reward,
    format_reward,
    language_reward,
    math_verify_score,
    overlong_reward,
    parse_reward_weights,
)
from tinyseek.tasks.base import Problem, Task
from tinyseek.tasks.completion import parse_completion
from tinyseek.tasks.language import detect_language, language_counts, language_share


class _AdditionTask(Task):
    """A minimal real Task (the contract of tinyseek/tasks/base.py) so accuracy goes through `score`."""

    name = "add"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return Problem(self.name, f"{a}+{b}", str(a + b), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return f"What is {problem.canonical}?"

    def solution(self, problem: Problem, lang: str = "en") -> str:
        return f"{problem.canonical}={problem.answer}\n<answer>{problem.answer}</answer>"

    def score(self, problem: Problem, completion: str) -> float:
        start, end = completion.rfind("<answer>"), completion.rfind("</answer>")
        if start < 0 or end < start:
            return 0.0
        return 1.0 if completion[start + len("<answer>") : end].strip() == problem.answer else 0.0


# --- format ------------------------------------------------------------------------------------------------

THINK_CASES = [
    ("3+4=7\n</think>\n<answer>7</answer>", True),  # the forced `<think>\n` was in the prompt
    ("3+4=7</think>The answer is 7.", True),
    ("<think>3+4=7</think><answer>7</answer>", False),  # a second opening tag
    ("3+4=7 <answer>7</answer>", False),  # reasoning never closed
    ("</think><answer>7</answer>", False),  # empty reasoning
    ("3+4=7</think>   \n", False),  # no answer after the reasoning
    ("a</think>b</think>c", False),  # two closing tags
    ("", False),
]
THINK_ANSWER_CASES = [
    ("<think>3+4=7</think><answer>7</answer>", True),
    (" <think>\n3+4=7\n</think>\n<answer> 7 </answer>\n", True),  # whitespace around the tags
    ("<think>3+4=7</think>7", False),  # no answer tags
    ("<think>3+4=7</think><answer>7</answer> extra", False),  # text after </answer>
    ("3+4=7</think><answer>7</answer>", False),  # missing opening tag
    ("<think> </think><answer>7</answer>", False),  # blank reasoning
    ("<think>x</think><answer></answer>", False),  # blank answer
    ("<think>x</think><answer>1</answer><answer>2</answer>", False),
    ("<think>x<think>y</think><answer>1</answer>", False),
]


@pytest.mark.parametrize("completion,ok", THINK_CASES)
def test_format_think_style(completion, ok):
    assert format_reward("think")(["p"], [completion]) == [1.0 if ok else 0.0]


@pytest.mark.parametrize("completion,ok", THINK_ANSWER_CASES)
def test_format_think_answer_style(completion, ok):
    assert format_reward("think_answer")(["p"], [completion]) == [1.0 if ok else 0.0]


def test_parse_completion_sections():
    parsed = parse_completion("step one\n</think>\n<answer>7</answer>")
    assert (parsed.reasoning, parsed.answer) == ("step one\n", "\n<answer>7</answer>")
    zero = parse_completion(" <think>why</think><answer>7</answer>", "think_answer")
    assert (zero.reasoning, zero.answer, zero.well_formed) == ("why", "<answer>7</answer>", True)
    unclosed = parse_completion("still thinking")
    assert (unclosed.reasoning, unclosed.answer, unclosed.well_formed) == ("still thinking", None, False)
    with pytest.raises(ValueError, match="format style 'xml'"):
        parse_completion("x", "xml")  # type: ignore[arg-type]


# --- accuracy ----------------------------------------------------------------------------------------------


def test_accuracy_through_a_task_reads_the_answer_section():
    task = _AdditionTask()
    problem = next(task.sample(seed=0))
    right, wrong = problem.answer, str(int(problem.answer) + 1)
    completions = [
        f"work</think><answer>{right}</answer>",
        f"work</think><answer>{wrong}</answer>",
        # An answer tag inside the reasoning does not count once the reasoning is closed.
        f"<answer>{right}</answer></think><answer>{wrong}</answer>",
        # Never closed: the whole completion is scored (format is a separate reward).
        f"work <answer>{right}</answer>",
        "no answer at all",
    ]
    reward = accuracy_reward(task.score)
    got = reward(["q"] * 5, completions, problem=[problem] * 5)
    assert got == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_accuracy_none_reference_is_not_applicable_and_missing_column_is_an_error():
    reward = accuracy_reward(math_verify_score, column="answer")
    assert reward(["q", "q"], ["</think>\\boxed{2}", "</think>\\boxed{2}"], answer=["2", None]) == [1.0, None]
    with pytest.raises(ValueError, match="column 'answer'"):
        reward(["q"], ["x"], problem=["2"])
    with pytest.raises(ValueError, match="1 values for 2 completions"):
        reward(["q", "q"], ["x", "y"], answer=["2"])


@pytest.mark.parametrize(
    "reference,completion,expected",
    [
        ("\\frac{1}{2}", "so \\boxed{0.5}", 1.0),
        ("1/2", "<answer>\\frac{1}{2}</answer>", 1.0),
        ("72", "<answer>72</answer>", 1.0),
        ("72", "<answer>70</answer><answer>72</answer>", 1.0),  # the last answer tag counts
        ("72", "<answer>72</answer><answer>70</answer>", 0.0),
        ("\\sqrt{2}", "$2^{1/2}$", 1.0),
        ("3", "I am not sure", 0.0),
    ],
)
def test_math_verify_score(reference, completion, expected):
    assert math_verify_score(reference, completion) == expected


# --- language ----------------------------------------------------------------------------------------------


def test_language_detector_on_scripts_and_lexicons():
    assert detect_language("What is 12 + 5?") == "en"
    assert detect_language("Combien font 12 + 5 ?") == "fr"
    assert detect_language("解方程：2x+3=7") == "zh"
    assert detect_language("12 + 5 = 17") is None
    counts = language_counts("Je retiens 1, j'écris 7. Check: x")
    assert (counts["fr"], counts["en"], counts["latin"]) == (4, 1, 1)  # je retiens j écris | check | x
    # Words in both lexicons (`on`, `total`, `correct`) are evidence for neither.
    assert language_counts("on total correct")["latin"] == 3


def test_language_share_values():
    assert language_share("write 7, carry 1", "en") == 1.0
    assert language_share("write 7, je retiens 1", "en") == pytest.approx(1 / 3)
    assert language_share("写7，进1", "zh") == 1.0
    # For zh, unknown Latin words count against; for en/fr they are neutral.
    assert language_share("写7 xyz", "zh") == pytest.approx(0.5)
    assert language_share("xyz carry", "en") == 1.0
    assert language_share("7+8=15", "fr") is None
    with pytest.raises(ValueError, match="unknown language 'de'"):
        language_share("x", "de")


def test_language_reward_uses_the_lang_column_or_the_prompt():
    reward = language_reward("think")
    prompts = ["Combien font 3 + 4 ?", "What is 3 + 4?", "What is 3 + 4?"]
    completions = [
        "3+4=7, j'écris 7</think><answer>7</answer>",  # fr reasoning for a fr prompt
        "3+4=7, j'écris 7</think><answer>7</answer>",  # fr reasoning for an en prompt
        "3+4=7</think>The answer is 7",  # no language evidence in the reasoning
    ]
    assert reward(prompts, completions) == [1.0, 0.0, None]
    assert reward(prompts, completions, lang=["en", "fr", "en"]) == [0.0, 1.0, None]
    # Only the reasoning is judged: an English answer section does not help.
    assert reward(["Combien font 3 + 4 ?"], ["3+4=7, je retiens 0</think>the answer is 7"]) == [1.0]


# --- overlong ----------------------------------------------------------------------------------------------


def test_overlong_reward_reads_token_lengths():
    reward = overlong_reward(max_len=10, cache=4)
    assert reward(["p"] * 4, ["a"] * 4, completion_lengths=[3, 6, 8, 10]) == pytest.approx(
        [0.0, 0.0, -0.5, -1.0]
    )
    with pytest.raises(ValueError, match="completion_lengths"):
        reward(["p"], ["a"])
    with pytest.raises(ValueError, match="cache"):
        overlong_reward(max_len=10, cache=11)


# --- the weighted set --------------------------------------------------------------------------------------


def test_reward_set_weights_none_and_metrics():
    def sometimes(prompts, completions, **columns):
        return [None, 1.0, 0.5]

    rewards = RewardSet().add("format", format_reward(), 0.5).add("custom", sometimes, 2.0)
    completions = ["r</think>a", "no close", "r</think>a"]
    scores = rewards(["p"] * 3, completions, unused_column=[1, 2, 3])
    assert scores.values == {"format": [1.0, 0.0, 1.0], "custom": [None, 1.0, 0.5]}
    # None counts as 0 in the total: 0.5*1 + 0, 0.5*0 + 2*1, 0.5*1 + 2*0.5.
    assert scores.total == pytest.approx([0.5, 2.0, 1.5])
    m = scores.metrics()
    assert m["reward/custom/mean"] == pytest.approx(0.75)  # None left out of the mean
    assert m["reward/custom/std"] == pytest.approx(0.25)
    assert m["reward/custom/applicable"] == pytest.approx(2 / 3)
    assert m["reward/format/mean"] == pytest.approx(2 / 3)
    assert m["reward/total/mean"] == pytest.approx(4 / 3)
    assert rewards.names == ["format", "custom"] and len(rewards) == 2


def test_reward_set_rejects_bad_functions_and_names():
    with pytest.raises(ValueError, match="already registered"):
        RewardSet().add("a", format_reward()).add("a", format_reward())
    with pytest.raises(ValueError, match="weight must be finite"):
        RewardSet().add("a", format_reward(), float("inf"))
    with pytest.raises(ValueError, match="empty"):
        RewardSet()(["p"], ["c"])
    short = RewardSet().add("short", lambda prompts, completions, **columns: [1.0])
    with pytest.raises(ValueError, match="returned 1 values for 2"):
        short(["p", "p"], ["c", "c"])
    nan = RewardSet().add("nan", lambda prompts, completions, **columns: [float("nan")])
    with pytest.raises(ValueError, match="'nan' gave nan at index 0"):
        nan(["p"], ["c"])
    text = RewardSet().add("text", lambda prompts, completions, **columns: ["1"])
    with pytest.raises(ValueError, match="finite number or None"):
        text(["p"], ["c"])


def test_reward_set_from_weights_builds_builtins():
    task = _AdditionTask()
    problem = next(task.sample(seed=1))
    options = RewardOptions(score=task.score, max_len=8, overlong_cache=4)
    rewards = RewardSet.from_weights(parse_reward_weights("accuracy=1, format=0.5, overlong"), options)
    assert rewards.names == ["accuracy", "format", "overlong"]
    completion = f"work</think><answer>{problem.answer}</answer>"
    scores = rewards(["q"], [completion], problem=[problem], completion_lengths=[6])
    assert scores.total == pytest.approx([1.0 + 0.5 - 0.5])
    with pytest.raises(ValueError, match="unknown reward 'style'"):
        RewardSet.from_weights({"style": 1.0})
    with pytest.raises(ValueError, match="RewardOptions.score"):
        RewardSet.from_weights({"accuracy": 1.0})
    with pytest.raises(ValueError, match="RewardOptions.max_len"):
        RewardSet.from_weights({"overlong": 1.0})


@pytest.mark.parametrize("spec", ["", "accuracy=x", "=1", "a=1,a=2", "a=inf"])
def test_parse_reward_weights_errors(spec):
    with pytest.raises(ValueError):
        parse_reward_weights(spec)


def test_parse_reward_weights():
    assert parse_reward_weights("accuracy=1,format=0.25, language") == {
        "accuracy": 1.0,
        "format": 0.25,
        "language": 1.0,
    }
