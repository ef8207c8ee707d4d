"""Linear equations in one unknown: `3x+7=22` (difficulty 1), `5x-3=2x+9` (difficulty 2 and up).

Solutions are integers at difficulties 1-2 and may be fractions (`x=7/2`) from difficulty 3; the
coefficient range grows with difficulty. The trace moves the constant, collects x, then divides:
`3x=22-7=15`, `x=15/3=5`. Answers compare as exact rationals, so `7/2`, `3.5` and `x = 7/2` agree.

Systematic slip: a negative odd constant is moved across without changing its sign (`3x=22-7`
where `22+7` is right). The self-check substitutes the answer into the original equation.
"""

from __future__ import annotations

import random
from fractions import Fraction

from tinyseek.tasks.answer import format_number
from tinyseek.tasks.base import Problem, check_language
from tinyseek.tasks.reasoning import ReverseCheckedTask, Slip, check_difficulty, check_line

QUESTION = {"en": "Solve for x: {equation}", "fr": "Résolvez en x : {equation}", "zh": "解方程：{equation}"}


def _term(coefficient: int, first: bool) -> str:
    """`3x`, `-x`, `+2x` (sign shown unless it leads the side)."""
    body = {1: "x", -1: "-x"}.get(coefficient, f"{coefficient}x")
    return body if first or coefficient < 0 else f"+{body}"


def _constant(value: int, first: bool) -> str:
    return str(value) if first or value < 0 else f"+{value}"


def _side(x_coefficient: int, constant: int) -> str:
    """One side of the equation, `ax+b`, dropping zero parts."""
    if x_coefficient == 0:
        return str(constant)
    return _term(x_coefficient, True) + (_constant(constant, False) if constant else "")


def _value(v: Fraction) -> str:
    """A number inside an expression: parenthesised when negative or fractional."""
    text = format_number(v)
    return text if v.denominator == 1 and v >= 0 else f"({text})"


class LinearEquationTask(ReverseCheckedTask):
    """Solve a linear equation in x; x on both sides from difficulty 2, fractions from 3."""

    name = "linear"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        check_difficulty(difficulty)
        span, half = 5 * difficulty + 5, (5 * difficulty + 5) // 2
        while True:
            a = rng.randint(2, half) if difficulty < 2 else rng.randint(-half, half)
            c = rng.randint(-half, half) if difficulty >= 2 else 0
            b = rng.randint(-2 * span, 2 * span)
            if a not in (0, 1) and a != c and b != 0:
                break
        if difficulty >= 3:
            d = rng.randint(-2 * span, 2 * span)
            x = Fraction(d - b, a - c)
        else:
            x = Fraction(rng.randint(-span, span))
            d = int((a - c) * x + b)
        data = {"a": a, "b": b, "c": c, "d": d}
        equation = f"{_side(a, b)}={_side(c, d)}"
        return Problem(self.name, equation, format_number(x), data)

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return QUESTION[check_language(lang)].format(equation=problem.canonical)

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        a, b, c, d = (problem.data[k] for k in "abcd")
        lines = []
        moved = -b if not slip(b < 0 and b % 2 == 1) else b
        if c:
            lines.append(f"{_term(a, True)}{_term(-c, False)}={d}{_constant(moved, False)}")
        coefficient, rhs = a - c, d + moved
        lines.append(f"{_term(coefficient, True)}={d}{_constant(moved, False)}={rhs}")
        x = Fraction(rhs, coefficient)
        if coefficient != 1:
            division = f"x={rhs}/{_value(Fraction(coefficient))}"
            lines.append(
                division if division == f"x={format_number(x)}" else f"{division}={format_number(x)}"
            )
        return lines, format_number(x)

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        a, b, c, d = (problem.data[k] for k in "abcd")
        x = Fraction(answer)
        left, right = a * x + b, c * x + d
        ok = left == right
        substituted = f"{a}*{_value(x)}{_constant(b, False)}={format_number(left)}"
        if c:
            substituted += f", {c}*{_value(x)}{_constant(d, False)}={format_number(right)}"
        return check_line(lang, [substituted], ok), ok
