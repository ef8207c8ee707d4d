"""Column arithmetic: addition, subtraction and multiplication by one digit, digit by digit.

Difficulty d gives (d + 2)-digit operands for addition and subtraction (d=1: 3 digits, traces of
~60-70 characters of reasoning) and a (d + 2)-digit number times a digit 2-9 for multiplication. Each line is
one column, right to left: `8+7=15, write 5, carry 1.`

Systematic slips (see tinyseek.tasks.reasoning), each a rule on the column's operands:
- addition: the carry out of a column is dropped when the top digit is larger than the bottom one;
- subtraction: a borrow is forgotten by the next column when the bottom digit is odd;
- multiplication: the carry is dropped when the top digit is larger than the multiplier.
The self-check is the reverse operation (`825-467=358`, `185+167=352`, `2082/6=347`).

Canonical forms sort the operands of commutative operations, so `a+b` and `b+a` share a split.
"""

from __future__ import annotations

import random

from tinyseek.tasks.base import Problem
from tinyseek.tasks.reasoning import ReasoningTask, Slip, check_difficulty, check_language, check_line

QUESTION = {
    "en": "What is {a} {op} {b}?",
    "fr": "Combien font {a} {op} {b} ?",
    "zh": "{a} {op} {b} 等于多少？",
}
# {expr}={value} then the digit written and, when there is one, the carry or borrow.
WRITE = {"en": ", write {digit}", "fr": ", j'écris {digit}", "zh": "，写{digit}"}
CARRY = {"en": ", carry {carry}", "fr": ", je retiens {carry}", "zh": "，进{carry}"}
BORROW = {"en": ", borrow 1", "fr": ", je retiens 1", "zh": "，借1"}
END = {"en": ".", "fr": ".", "zh": "。"}
SEP = {"en": ", ", "fr": ", ", "zh": "，"}


def _digits(n: int, width: int) -> list[int]:
    """Digits of n, least significant first, padded to width."""
    return [(n // 10**i) % 10 for i in range(width)]


def _number(rng: random.Random, digits: int) -> int:
    return rng.randrange(10 ** (digits - 1), 10**digits)


def _carry_columns(columns: list[tuple[str, int, bool]], lang: str, slip: Slip) -> tuple[list[str], str]:
    """Right-to-left columns `(expression, value, error_prone)`; the carry joins the next column.

    The last column writes its whole value (`3+6+1=10, write 10.`); a slipped carry is simply lost.
    """
    lines, written, carry = [], [], 0
    for i, (expr, value, prone) in enumerate(columns):
        total = value + carry
        expr += f"+{carry}" if carry else ""
        carry = total // 10
        if carry and slip(prone):
            carry = 0
        last = i == len(columns) - 1
        digit = total if last and carry else total % 10
        line = f"{expr}={total}{WRITE[lang].format(digit=digit)}"
        if carry and not last:
            line += CARRY[lang].format(carry=carry)
        lines.append(line + END[lang])
        written.append(str(digit)[::-1])
    return lines, str(int("".join(written)[::-1]))


class AdditionTask(ReasoningTask):
    """Column addition with carries; difficulty d adds two (d + 2)-digit numbers."""

    name = "addition"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        width = check_difficulty(difficulty) + 2
        a, b = _number(rng, width), _number(rng, width)
        return Problem(self.name, f"{min(a, b)}+{max(a, b)}", str(a + b), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return QUESTION[check_language(lang)].format(a=problem.data["a"], op="+", b=problem.data["b"])

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        a, b = problem.data["a"], problem.data["b"]
        width = max(len(str(a)), len(str(b)))
        columns = [
            (f"{x}+{y}", x + y, x > y) for x, y in zip(_digits(a, width), _digits(b, width), strict=True)
        ]
        return _carry_columns(columns, lang, slip)

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        a, b = problem.data["a"], problem.data["b"]
        back = int(answer) - b
        return check_line(lang, [f"{answer}-{b}={back}"], back == a), back == a


class SubtractionTask(ReasoningTask):
    """Column subtraction with borrows; difficulty d: two (d + 2)-digit numbers, result >= 0."""

    name = "subtraction"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        width = check_difficulty(difficulty) + 2
        a, b = sorted((_number(rng, width), _number(rng, width)), reverse=True)
        return Problem(self.name, f"{a}-{b}", str(a - b), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return QUESTION[check_language(lang)].format(a=problem.data["a"], op="-", b=problem.data["b"])

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        a, b = problem.data["a"], problem.data["b"]
        width = len(str(a))
        lines, written, borrow = [], [], 0
        for x, y in zip(_digits(a, width), _digits(b, width), strict=True):
            line = f"{x}-1={x - 1}{SEP[lang]}" if borrow else ""
            top = x - borrow
            borrow = int(top < y)
            top += 10 * borrow
            line += f"{top}-{y}={top - y}{WRITE[lang].format(digit=top - y)}"
            if borrow:
                line += BORROW[lang]
                if slip(y % 2 == 1):
                    borrow = 0
            lines.append(line + END[lang])
            written.append(str(top - y))
        return lines, str(int("".join(written)[::-1]))

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        a, b = problem.data["a"], problem.data["b"]
        back = int(answer) + b
        return check_line(lang, [f"{answer}+{b}={back}"], back == a), back == a


class MultiplicationTask(ReasoningTask):
    """A (d + 2)-digit number times one digit 2-9, column by column with carries."""

    name = "multiplication"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        a, b = _number(rng, check_difficulty(difficulty) + 2), rng.randrange(2, 10)
        return Problem(self.name, f"{a}*{b}", str(a * b), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return QUESTION[check_language(lang)].format(a=problem.data["a"], op="*", b=problem.data["b"])

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        a, b = problem.data["a"], problem.data["b"]
        columns = [(f"{x}*{b}", x * b, x > b) for x in _digits(a, len(str(a)))]
        return _carry_columns(columns, lang, slip)

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        a, b = problem.data["a"], problem.data["b"]
        quotient, remainder = divmod(int(answer), b)
        ok = remainder == 0 and quotient == a
        shown = f"{answer}/{b}={quotient}" if remainder == 0 else f"{answer}/{b}={quotient} r{remainder}"
        return check_line(lang, [shown], ok), ok
