"""Procedural tasks: verifiers on right/wrong/tricky answers, splits, traces with slips and self-checks."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import re

import pytest

from tinyseek.commands import tasks as tasks_command
from tinyseek.tasks import LANGUAGES, TASKS, ReasoningTask, get_task, split_of
from tinyseek.tasks.answer import extract_answer, parse_number
from tinyseek.tasks.base import Problem, Task
from tinyseek.tasks.column_arithmetic import AdditionTask
from tinyseek.tasks.countdown import CountdownTask, evaluate_expression

# The coding family runs programs in the sandbox; tests/test_coding_task.py covers it.
REASONING = [name for name, cls in TASKS.items() if issubclass(cls, ReasoningTask)]


def problem_of(name: str, a: int, b: int) -> Problem:
    """A hand-picked column-arithmetic problem in the generator's format."""
    op = {"addition": "+", "subtraction": "-", "multiplication": "*"}[name]
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    canonical = f"{min(a, b)}+{max(a, b)}" if op == "+" else f"{a}{op}{b}"
    return Problem(name, canonical, str(value), {"a": a, "b": b})


def answer(text: str) -> str:
    return f"<think>work</think>\n<answer>{text}</answer>"


# -- answer extraction ----------------------------------------------------------------------------


def test_extraction_policy() -> None:
    assert extract_answer("<answer>1</answer> then <answer>2</answer>") == "2"  # the last tag counts
    assert extract_answer("<answer> \\boxed{1/2} </answer>") == "1/2"
    assert extract_answer("so \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{1} <answer>3</answer>") == "3"  # a tag beats a box
    assert extract_answer("the answer is 5") is None  # no tag, no box: no answer
    assert extract_answer("<answer>5") is None  # unclosed tag
    assert extract_answer("\\boxed{unclosed") is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        (" 007 ", 7),
        ("-3", -3),
        ("\u22123", -3),
        ("+4", 4),
        ("1/2", 0.5),
        ("0.5", 0.5),
        ("\\frac{1}{2}", 0.5),
        ("-\\dfrac{3}{4}", -0.75),
        ("x = 7/2", 3.5),
        ("$1,234$", 1234),
        ("1 234", 1234),
        ("(-2)", -2),
        (".5", 0.5),
        ("- 5", -5),
    ],
)
def test_parse_number_accepts(text: str, value: float) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1/0", "12 34", "1,23", "--5", "1.5e3", "2+3", "1/2/3"])
def test_parse_number_rejects(text: str) -> None:
    assert parse_number(text) is None


# -- verifiers, task by task ----------------------------------------------------------------------


def test_addition_verifier() -> None:
    task, p = get_task("addition"), problem_of("addition", a=358, b=467)
    assert p.answer == "825"
    for good in ["825", " 825 ", "0825", "825.0", "\\boxed{825}", "$825$", "1650/2"]:
        assert task.score(p, answer(good)) == 1.0, good
    for bad in ["815", "-825", "82 5", "", "eight hundred"]:
        assert task.score(p, answer(bad)) == 0.0, bad
    assert task.score(p, "825") == 0.0  # no tag at all
    assert task.score(p, "\\boxed{825}") == 1.0
    assert task.score(p, answer("825") + "<answer>815</answer>") == 0.0  # last tag counts
    assert task.score(p, "<answer>815</answer> wait <answer>825</answer>") == 1.0


def test_subtraction_and_multiplication_verifiers() -> None:
    sub, p = get_task("subtraction"), problem_of("subtraction", a=352, b=167)
    assert p.answer == "185" and sub.score(p, answer("185")) == 1.0 and sub.score(p, answer("195")) == 0.0
    mul, q = get_task("multiplication"), problem_of("multiplication", a=347, b=6)
    assert q.answer == "2082" and mul.score(q, answer("2,082")) == 1.0 and mul.score(q, answer("2072")) == 0.0


def test_linear_verifier_with_fractions_and_negatives() -> None:
    task = get_task("linear")
    p = Problem("linear", "2x+32=35", "3/2", {"a": 2, "b": 32, "c": 0, "d": 35})
    for good in ["3/2", "1.5", "\\frac{3}{2}", "x = 3/2", "\\boxed{1.50}", "6/4"]:
        assert task.score(p, answer(good)) == 1.0, good
    for bad in ["3", "2/3", "-3/2", "1.49"]:
        assert task.score(p, answer(bad)) == 0.0, bad
    q = Problem("linear", "3x+18=0", "-6", {"a": 3, "b": 18, "c": 0, "d": 0})
    assert task.score(q, answer("-6")) == 1.0 and task.score(q, answer("\u22126")) == 1.0
    assert task.score(q, answer("6")) == 0.0


def test_gcd_verifier() -> None:
    task, p = get_task("gcd"), Problem("gcd", "gcd(84,36)", "12", {"a": 84, "b": 36})
    assert task.score(p, answer("12")) == 1.0 and task.score(p, answer("012")) == 1.0
    assert task.score(p, answer("6")) == 0.0 and task.score(p, answer("4")) == 0.0


def test_countdown_verifier_is_safe_and_counts_numbers() -> None:
    task = CountdownTask()
    p = Problem("countdown", "3,4,25->87", "(25+4)*3", {"numbers": [3, 4, 25], "target": 87})
    for good in ["(25+4)*3", "3*(4+25)", "(25 + 4) × 3", "(25+4)*3 = 87", "\\boxed{(25+4)*3}"]:
        assert task.score(p, answer(good)) == 1.0, good
    for bad in [
        "25+4*3",
        "(25+4)*3*1",
        "(25+25)*3",
        "87",
        "(25+4)*3+3-3",
        "__import__('os').getcwd()",
        "2**7",
        "-3+90",
        "(25+4)*3.0",
        "29*3",
        "",
    ]:
        assert task.score(p, answer(bad)) == 0.0, bad
    twice = Problem("countdown", "5,5,10->20", "5+5+10", {"numbers": [5, 5, 10], "target": 20})
    assert task.score(twice, answer("5+5+10")) == 1.0  # a number given twice may be used twice
    assert task.score(twice, answer("10+10")) == 0.0
    fractional = Problem("countdown", "1,3,4,6->24", "6/(1-3/4)", {"numbers": [1, 3, 4, 6], "target": 24})
    assert task.score(fractional, answer("6/(1-3/4)")) == 1.0  # exact fractions on the way
    with pytest.raises(ValueError, match="division by zero"):
        evaluate_expression("4/(2-2)")


# -- every task: generation, rendering, solutions score 1 ----------------------------------------


@pytest.mark.parametrize("name", REASONING)
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_solutions_are_correct_in_every_language(name: str, difficulty: int) -> None:
    task = get_task(name)
    for problem in itertools.islice(task.sample(seed=1, difficulty=difficulty), 50):
        assert split_of(problem.canonical) == "train"
        prompts = {lang: task.prompt(problem, lang) for lang in LANGUAGES}
        assert len(set(prompts.values())) == 3
        for lang in LANGUAGES:
            assert task.score(problem, task.solution(problem, lang)) == 1.0, (problem, lang)


def test_traces_are_short_at_easy_difficulty() -> None:
    for name in REASONING:
        task = get_task(name)
        assert isinstance(task, ReasoningTask)
        lengths = [len(task.trace(p).reasoning) for p in itertools.islice(task.sample(seed=2), 200)]
        assert sum(lengths) / len(lengths) <= 120, name


def test_direct_answers_have_no_reasoning_and_the_right_answer() -> None:
    task = get_task("addition")
    assert isinstance(task, ReasoningTask)
    rng = random.Random(6)
    problems = itertools.islice(task.sample(seed=6), 400)
    traces = [task.trace(p, "en", 0.5, 0.5, rng, direct_rate=0.4) for p in problems]
    direct = [t for t in traces if t.direct]
    assert 0.3 <= len(direct) / len(traces) <= 0.5
    assert all(t.reasoning == "" and t.correct and not t.self_checked for t in direct)
    worked = [t for t in traces if not t.direct]
    assert 0.35 <= sum(t.self_checked for t in worked) / len(worked) <= 0.65  # self_check_rate of the rest
    with pytest.raises(ValueError, match="direct_rate must be in"):
        task.trace(next(task.sample(seed=6)), direct_rate=-0.1)


def test_sampling_is_reproducible_and_respects_the_split() -> None:
    task = get_task("addition")
    first = [p.canonical for p in itertools.islice(task.sample(seed=7, split="test"), 20)]
    assert first == [p.canonical for p in itertools.islice(task.sample(seed=7, split="test"), 20)]
    assert all(split_of(c) == "test" for c in first)
    assert first != [p.canonical for p in itertools.islice(task.sample(seed=8, split="test"), 20)]


@pytest.mark.parametrize("name", ["addition", "multiplication"])
def test_train_validation_and_test_problems_never_overlap(name: str) -> None:
    """Compared by the problems' canonical text (what the model is asked), not by the split function."""
    task = get_task(name)
    drawn = {
        split: {p.canonical for p in itertools.islice(task.sample(seed=11, split=split), n)}
        for split, n in (("train", 20000), ("validation", 1500), ("test", 2000))
    }
    assert not drawn["train"] & drawn["validation"]
    assert not drawn["train"] & drawn["test"]
    assert not drawn["validation"] & drawn["test"]
    # The same text under another seed stays on its side: a validation problem never appears as train.
    other = {p.canonical for p in itertools.islice(task.sample(seed=12, split="train"), 20000)}
    assert not other & (drawn["validation"] | drawn["test"])


def test_commutative_problems_share_a_canonical_form() -> None:
    task = get_task("addition")
    rng = random.Random(3)
    for _ in range(200):
        p = task.make(rng, 1)
        assert p.canonical == f"{min(p.data['a'], p.data['b'])}+{max(p.data['a'], p.data['b'])}"


# -- imperfect traces for the R1-Zero demo --------------------------------------------------------


@pytest.mark.parametrize("name", REASONING)
def test_slips_are_systematic_and_frequent(name: str) -> None:
    """error_rate 1 makes every error-prone step wrong: a good share of problems, never all of them."""
    task = get_task(name)
    assert isinstance(task, ReasoningTask)
    problems = list(itertools.islice(task.sample(seed=3), 400))
    wrong = [p for p in problems if not task.trace(p, error_rate=1.0).correct]
    share = len(wrong) / len(problems)
    if name in ("addition", "multiplication"):
        # Any column may slip (its total misremembered by one): at rate 1 every trace is wrong.
        assert share == 1.0, (name, share)
    else:
        # Countdown slips only where a sum is then multiplied or divided: rarer with 3 numbers.
        assert (0.1 if name == "countdown" else 0.2) <= share <= 0.8, (name, share)
    for p in wrong[:50]:
        assert task.score(p, task.trace(p, error_rate=1.0).text()) == 0.0
        assert task.trace(p, error_rate=0.0).correct
        # The slip depends on the problem only: two independent traces at rate 1 agree.
        assert (
            task.trace(p, error_rate=1.0, rng=random.Random(1)).answer
            == task.trace(p, error_rate=1.0, rng=random.Random(2)).answer
        )


def test_majority_answer_is_wrong_on_error_prone_problems() -> None:
    task = get_task("subtraction")  # a rule on the operands decides where it slips
    assert isinstance(task, ReasoningTask)
    rng = random.Random(0)
    problems = list(itertools.islice(task.sample(seed=4), 200))
    majority_wrong = 0
    for p in problems:
        answers = [task.trace(p, error_rate=0.7, rng=rng).answer for _ in range(15)]
        top = max(set(answers), key=answers.count)
        majority_wrong += top != p.answer
    assert 0.2 <= majority_wrong / len(problems) <= 0.7


@pytest.mark.parametrize("name", REASONING)
def test_self_checks_are_a_minority_and_always_end_correct(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, ReasoningTask)
    rng = random.Random(5)
    traces = [task.trace(p, "fr", 0.7, 0.2, rng) for p in itertools.islice(task.sample(seed=5), 300)]
    checked = [t for t in traces if t.self_checked]
    assert 0.1 <= len(checked) / len(traces) <= 0.3
    assert all(t.correct and "Vérification : " in t.reasoning for t in checked)
    # A failed check is followed by the work done right: a redo, or (carry columns) the line written again.
    assert any("✗" in t.reasoning and t.slipped for t in checked)
    assert not any("Vérification" in t.reasoning for t in traces if not t.self_checked)


def test_addition_trace_format() -> None:
    task = get_task("addition")
    assert isinstance(task, ReasoningTask)
    p = problem_of("addition", a=358, b=467)
    read = ""
    right = (
        "ones: 8+7=15, write 5, carry 1 → 5.\ntens: 5+6+1=12, write 2, carry 1 → 25.\n"
        "hundreds: 3+4+1=8, write 8 → 825."
    )
    assert task.trace(p).reasoning == read + right
    # A slip misremembers a column's total by one; the digit and the carry follow the wrong total.
    plain = task.trace(p, error_rate=1.0)
    slipped = (
        "ones: 8+7=14, write 4, carry 1 → 4.\ntens: 5+6+1=13, write 3, carry 1 → 34.\n"
        "hundreds: 3+4+1=9, write 9 → 934."
    )
    assert plain.reasoning == read + slipped
    assert plain.answer == "934" and plain.slipped and not plain.correct
    # A self-checking trace restates the question, does the work again (without slips) and compares;
    # when the two differ it restates the question again and redoes the work: the redo's result is
    # the answer.
    question = f"What is {p.data['a']}+{p.data['b']}?"
    check = f"Check: again, carefully.\n{question}\n" + right
    checked = task.trace(p, error_rate=1.0, self_check_rate=1.0)
    assert checked.reasoning == f"{read}{slipped}\n{check}\n934 ≠ 825 ✗\nRedo:\n{question}\n{right}"
    assert checked.answer == "825" and checked.correct and checked.self_checked
    clean = task.trace(p, error_rate=0.0, self_check_rate=1.0)
    assert clean.reasoning == f"{read}{right}\n{check}\n825 = 825 ✓" and clean.answer == "825"
    assert task.trace(p, "zh").reasoning.startswith(read + "个位：8+7=15，写5，进1 → 5。")
    assert task.trace(p, "zh", 0.0, 1.0).reasoning.count("验算：再仔细算一遍。") == 1


# -- splits ---------------------------------------------------------------------------------------


COMMUTATIVE = {"addition", "multiplication", "gcd"}


def question_keys(task: Task, problem: Problem) -> set[tuple[object, ...]]:
    """What identifies a problem to a reader, computed from the prompt TEXT, not from `canonical`:
    the whitespace-normalized question in every language, and the English question's numbers with
    the operands of a commutative operation (and countdown's number set) in sorted order, so that
    "7 * 427" and "427 * 7" are one problem. A split built on a wrong `canonical` cannot hide from it."""
    keys: set[tuple[object, ...]] = {
        (lang, " ".join(task.prompt(problem, lang).split())) for lang in LANGUAGES
    }
    numbers = [int(x) for x in re.findall(r"\d+", task.prompt(problem, "en"))]
    if task.name in COMMUTATIVE:
        keys.add(("numbers", tuple(sorted(numbers))))
    elif task.name == "countdown":
        keys.add(("numbers", tuple(sorted(numbers[:-1])), numbers[-1]))
    return keys


def overlapping_questions(task: Task, per_split: int, difficulty: int = 1) -> set[tuple[object, ...]]:
    splits = ("train", "validation", "test")
    streams = {split: task.sample(seed=0, difficulty=difficulty, split=split) for split in splits}
    keys = {
        split: set().union(*(question_keys(task, p) for p in itertools.islice(stream, per_split)))
        for split, stream in streams.items()
    }
    assert all(keys.values())
    return (
        (keys["train"] & keys["test"])
        | (keys["train"] & keys["validation"])
        | (keys["validation"] & keys["test"])
    )


def _no_overlap(per_split: int) -> None:
    for name in REASONING:
        for difficulty in (1, 2):
            assert not overlapping_questions(get_task(name), per_split, difficulty), (name, difficulty)


class LeakyAddition(AdditionTask):
    """A broken task: its canonical form carries noise, so one question hashes into both splits."""

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        problem = super().make(rng, difficulty)
        return dataclasses.replace(problem, canonical=f"{problem.canonical}#{rng.randrange(8)}")


def test_the_overlap_check_catches_a_split_on_a_wrong_canonical_form() -> None:
    leaky = LeakyAddition()
    train = {p.canonical for p in itertools.islice(leaky.sample(seed=0, split="train"), 3000)}
    test = {p.canonical for p in itertools.islice(leaky.sample(seed=0, split="test"), 3000)}
    assert not train & test  # comparing canonical forms (the old check) sees nothing wrong
    assert overlapping_questions(leaky, 3000), "the same question in both splits went unnoticed"


def test_train_and_test_never_overlap_smoke() -> None:
    _no_overlap(5_000)


@pytest.mark.slow
def test_train_and_test_never_overlap_100k() -> None:
    _no_overlap(100_000)


# -- bad inputs and the CLI -----------------------------------------------------------------------


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    task = get_task("addition")
    assert isinstance(task, ReasoningTask)
    with pytest.raises(ValueError, match="difficulty -1"):
        task.make(random.Random(0), -1)
    with pytest.raises(ValueError, match="difficulty 0 out of range; expected 1..8"):
        get_task("gcd").make(random.Random(0), 0)
    p = task.make(random.Random(0), 1)
    with pytest.raises(ValueError, match="unknown language 'de'"):
        task.prompt(p, "de")
    with pytest.raises(ValueError, match="error_rate must be in"):
        task.trace(p, error_rate=1.5)


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    tasks_command.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["tasks", *argv])


def test_cli_sample_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli("sample", "countdown", "-n", "3", "--lang", "fr", "--split", "test", "--json")
    assert args.func(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    task = get_task("countdown")
    for row in rows:
        assert split_of(row["canonical"]) == "test" and row["prompt"].startswith("Avec les nombres")
        assert row["correct"] is True
        numbers, target = row["canonical"].split("->")
        p = Problem(
            "countdown",
            row["canonical"],
            row["answer"],
            {"numbers": [int(n) for n in numbers.split(",")], "target": int(target)},
        )
        assert task.score(p, row["solution"]) == 1.0


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli("list", "--json")
    assert args.func(args) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == list(TASKS)


def test_multiplication_adds_the_carry_as_its_own_step() -> None:
    task = get_task("multiplication")
    assert isinstance(task, ReasoningTask)
    p = problem_of("multiplication", a=176, b=6)
    assert task.trace(p).reasoning == (
        "ones: 6*6=36, write 6, carry 3 → 6.\n"
        "tens: 7*6=42, 42+3=45, write 5, carry 4 → 56.\nhundreds: 1*6=6, 6+4=10, write 10 → 1056."
    )
    # Every column slips at error_rate 1; the check does the work again and catches it.
    checked = task.trace(p, error_rate=1.0, self_check_rate=1.0)
    assert checked.reasoning.startswith("ones: 6*6=37, write 7, carry 3 → 7.\ntens: 7*6=42, 42+3=44,")
    assert (
        "Check: again, carefully.\nWhat is 176*6?\nones: 6*6=36, write 6, carry 3 → 6.\ntens: 7*6=42, 42+3=45"
        in checked.reasoning
    )
    assert "1147 ≠ 1056 ✗\nRedo:\nWhat is 176*6?\n" in checked.reasoning
    assert checked.reasoning.endswith("hundreds: 1*6=6, 6+4=10, write 10 → 1056.")
    assert checked.answer == "1056"
