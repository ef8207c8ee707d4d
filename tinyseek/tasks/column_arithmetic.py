"""Column arithmetic: addition, subtraction and multiplication by one digit, digit by digit.

Difficulty d gives (d + 2)-digit operands for addition and subtraction (d=1: 3 digits; d=0, the
tiny demo model's size: 2 digits) and a (d + 2)-digit number times a digit 2-9 for multiplication. Each line is one column, right to left,
named by its place and ending with the digits written so far:

    ones: 8+7=15, write 5, carry 1 → 5.
    tens: 5+6+1=12, write 2, carry 1 → 25.
    hundreds: 3+4+1=8, write 8 → 825.

Multiplication adds the incoming carry as a step of its own: `tens: 7*6=42, 42+3=45, write 5, carry 4`.

Each aid was measured to matter for the 1.7M-parameter demo model (tinyseek.r1zero): without the
place word it misread the operands' digits after 2M tokens; without the running digits it read the
answer back from the lines wrongly (greedy 5% against 42% for addition at equal tokens). Reading an
operand's digit into its column is the skill that comes last, farthest digit last: after 2.2M tokens
of 3-digit traces it read the ones and tens but wrote the hundreds digit of the first operand as a
constant; the demo therefore works on 2-digit operands (difficulty 0). Three reading aids were tried
on 3-digit addition at 1.2M tokens and none read the operands (0/100 greedy each): place tags in the
question (`[h3 t5 o8] + [h4 t6 o7]`), the same with the second operand's tags in capitals, and each
column's digits listed under its place word (`ones: 8, 7; tens: 5, 6; ...`); the model writing the
tags itself as its first line (`358 = h3 t5 o8`) copied the operands wrongly at 2.4M tokens.

Slips (see tinyseek.tasks.reasoning):
- addition and multiplication: a column's total misremembered by one (`5+6+1=13`), at random in any
  column; the digit written and the carry follow the wrong total. A random slip, unlike the earlier
  rule on the operands (a carry dropped when the top digit was the larger), cannot be predicted from
  the question, so a check that copied the work's lines would miss it: in the corpus a check has to
  compute its lines, which is what lets it catch the model's own slips later;
- subtraction: a borrow is forgotten by the next column when the bottom digit is odd.

Self-checks. Addition and multiplication check by doing the work again: `Check: again, carefully.`,
the question restated, the column lines again (they never slip), then a comparison (`825 = 825 ✓`);
when the results differ (`815 ≠ 825 ✗`), `Redo:`, the question once more and the work, whose result
is the answer. Restating the question puts the operands next to the lines that read them, as in the
first pass: without it the check read the operands from ~50 tokens back and misread them where the
work had read them right (seed 2 of the three-seed run: checked samples 18% right, unchecked 38%).
The check reads the operands in the same order as the work: a check that swapped them (`ones: 7+8`
after `ones: 8+7`) slowed the tiny model's learning to read the operands (2-digit addition: the tens
digits still misread after 2.1M tokens). Subtraction keeps the reverse operation
(`Check: 358+467=825 ✓`).

Canonical forms sort the operands of commutative operations, so `a+b` and `b+a` share a split.
"""

from __future__ import annotations

import random
from abc import abstractmethod

from tinyseek.tasks.base import Problem, check_language
from tinyseek.tasks.reasoning import (
    BAD_MARK,
    CHECK,
    OK_MARK,
    REDO,
    ReasoningTask,
    ReverseCheckedTask,
    Slip,
    check_difficulty,
    check_line,
)

# No spaces around the operator (`53+92`). The tiny model reads an operand's digits into their columns
# last. With a bare space token before each number it read the first operand's leading digit last of
# all, and whether it learned to within the budget varied with the seed: with `53 + 92` one seed of
# two did after 2.1M tokens, with `53+92` one of two after 3.2M, with `(53+92)` neither of two. Since
# the tokenizer keeps the space with the first digit (`Ġ5`, `3`), three seeds of three read every
# operand digit by 2.25M tokens (tinyseek.r1zero.reading).
QUESTION = {
    "en": "What is {a}{op}{b}?",
    "fr": "Combien font {a}{op}{b} ?",
    "zh": "{a}{op}{b} 等于多少？",
}
# {expr}={value} then the digit written and, when there is one, the carry or borrow.
WRITE = {"en": ", write {digit}", "fr": ", j'écris {digit}", "zh": "，写{digit}"}
CARRY = {"en": ", carry {carry}", "fr": ", je retiens {carry}", "zh": "，进{carry}"}
BORROW = {"en": ", borrow 1", "fr": ", je retiens 1", "zh": "，借1"}
END = {"en": ".", "fr": ".", "zh": "。"}
SEP = {"en": ", ", "fr": ", ", "zh": "，"}
SO_FAR = " → {written}"
PLACES = {
    "en": ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands", "millions",
           "ten-millions", "hundred-millions", "billions"),
    "fr": ("unités", "dizaines", "centaines", "milliers", "dizaines de milliers",
           "centaines de milliers", "millions", "dizaines de millions", "centaines de millions",
           "milliards"),
    "zh": ("个位", "十位", "百位", "千位", "万位", "十万位", "百万位", "千万位", "亿位", "十亿位"),
}  # fmt: skip
COLON = {"en": ": ", "fr": " : ", "zh": "："}
# The check's first line: a constant, so that starting a check copies nothing.
AGAIN = {"en": "again, carefully.", "fr": "encore, avec soin.", "zh": "再仔细算一遍。"}

# One column of a carry algorithm: (expression without the incoming carry, its value).
Column = tuple[str, int]


def _digits(n: int, width: int) -> list[int]:
    """Digits of n, least significant first, padded to width."""
    return [(n // 10**i) % 10 for i in range(width)]


def _number(rng: random.Random, digits: int) -> int:
    return rng.randrange(10 ** (digits - 1), 10**digits)


def _question(problem: Problem, op: str, lang: str) -> str:
    return QUESTION[check_language(lang)].format(a=problem.data["a"], op=op, b=problem.data["b"])


def _place(column: int, lang: str) -> str:
    return PLACES[lang][column] + COLON[lang]


def _outcome(lang: str, digit: int, carry: int) -> str:
    """`, write 5, carry 1` (no carry part when there is none)."""
    return WRITE[lang].format(digit=digit) + (CARRY[lang].format(carry=carry) if carry else "")


def _no_slip(prone: bool) -> bool:
    return False


def _carry_columns(columns: list[Column], lang: str, slip: Slip, stepwise: bool) -> tuple[list[str], str]:
    """Right-to-left columns; the carry joins the next column.

    The incoming carry is added in the expression (`5+6+1=12`) or, `stepwise`, after the column's
    own value (`7*6=42, 42+3=45`). The last column writes its whole value (`3+6+1=10, write 10.`).
    """
    lines: list[str] = []
    written = ""  # the digits written so far, most significant first
    carry = 0
    for i, (expr, value) in enumerate(columns):
        total = value + carry
        if slip(True):  # a fact misremembered by one; the digit and carry follow the wrong total
            total += 1 if total % 2 == 0 else -1
        if not carry:
            head = f"{_place(i, lang)}{expr}={total}"
        elif stepwise:
            head = f"{_place(i, lang)}{expr}={value}{SEP[lang]}{value}+{carry}={total}"
        else:
            head = f"{_place(i, lang)}{expr}+{carry}={total}"
        last = i == len(columns) - 1
        digit, carry = (total, 0) if last else (total % 10, total // 10)
        written = f"{digit}{written}"
        lines.append(f"{head}{_outcome(lang, digit, carry)}{SO_FAR.format(written=written)}{END[lang]}")
    return lines, str(int(written))


class CarryColumnTask(ReasoningTask):
    """`a op b` by a right-to-left column algorithm with carries, checked by doing it again."""

    op: str
    stepwise: bool = False  # add the incoming carry as its own step (see `_carry_columns`)

    @abstractmethod
    def columns(self, problem: Problem) -> list[Column]:
        """The columns, least significant first."""

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return _question(problem, self.op, lang)

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        return _carry_columns(self.columns(problem), lang, slip, self.stepwise)

    def checked_work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        lines, answer = self.work(problem, lang, slip)
        check, expected = _carry_columns(self.columns(problem), lang, _no_slip, self.stepwise)
        question = self.prompt(problem, lang)
        lines += [f"{CHECK[lang]}{AGAIN[lang]}", question, *check]
        if answer == expected:
            return [*lines, f"{answer} = {expected} {OK_MARK}"], answer
        redo, redone = _carry_columns(self.columns(problem), lang, _no_slip, self.stepwise)
        return [*lines, f"{answer} ≠ {expected} {BAD_MARK}", REDO[lang], question, *redo], redone


class AdditionTask(CarryColumnTask):
    """Column addition with carries; difficulty d adds two (d + 2)-digit numbers."""

    name = "addition"
    op = "+"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        width = check_difficulty(difficulty, lowest=0) + 2
        a, b = _number(rng, width), _number(rng, width)
        return Problem(self.name, f"{min(a, b)}+{max(a, b)}", str(a + b), {"a": a, "b": b})

    def columns(self, problem: Problem) -> list[Column]:
        a, b = problem.data["a"], problem.data["b"]
        width = max(len(str(a)), len(str(b)))
        return [(f"{x}+{y}", x + y) for x, y in zip(_digits(a, width), _digits(b, width), strict=True)]


class MultiplicationTask(CarryColumnTask):
    """A (d + 2)-digit number times one digit 2-9, column by column with carries."""

    name = "multiplication"
    op = "*"
    # Measured: the demo model added a carry to a product in one step wrongly on 72% of such
    # lines after 2M tokens (times table itself: 0.5% wrong); as two steps each is a table lookup.
    stepwise = True

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        a, b = _number(rng, check_difficulty(difficulty, lowest=0) + 2), rng.randrange(2, 10)
        return Problem(self.name, f"{a}*{b}", str(a * b), {"a": a, "b": b})

    def columns(self, problem: Problem) -> list[Column]:
        a, b = problem.data["a"], problem.data["b"]
        return [(f"{x}*{b}", x * b) for x in _digits(a, len(str(a)))]


class SubtractionTask(ReverseCheckedTask):
    """Column subtraction with borrows; difficulty d: two (d + 2)-digit numbers, result >= 0."""

    name = "subtraction"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        width = check_difficulty(difficulty, lowest=0) + 2
        a, b = sorted((_number(rng, width), _number(rng, width)), reverse=True)
        return Problem(self.name, f"{a}-{b}", str(a - b), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return _question(problem, "-", lang)

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        a, b = problem.data["a"], problem.data["b"]
        width = len(str(a))
        lines, written, borrow = [], [], 0
        for column, (x, y) in enumerate(zip(_digits(a, width), _digits(b, width), strict=True)):
            line = _place(column, lang) + (f"{x}-1={x - 1}{SEP[lang]}" if borrow else "")
            top = x - borrow
            borrow = int(top < y)
            top += 10 * borrow
            line += f"{top}-{y}={top - y}{WRITE[lang].format(digit=top - y)}"
            if borrow:
                line += BORROW[lang]
                if slip(y % 2 == 1):
                    borrow = 0
            written.append(str(top - y))
            lines.append(line + SO_FAR.format(written="".join(written)[::-1]) + END[lang])
        return lines, str(int("".join(written)[::-1]))

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        a, b = problem.data["a"], problem.data["b"]
        back = int(answer) + b
        return check_line(lang, [f"{answer}+{b}={back}"], back == a), back == a
