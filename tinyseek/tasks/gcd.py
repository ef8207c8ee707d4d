"""Greatest common divisor by Euclid's algorithm: one division with remainder per line.

Difficulty d draws two numbers below 10^(d+1) that share a factor (so the answer is rarely 1): a
common factor g times two cofactors. The trace writes `84=2*36+12`, `36=3*12+0`, and the answer is
the last non-zero remainder; the number of lines grows with the size of the numbers, which is where
step-by-step reasoning pays off.

Systematic slip: the remainder comes out one too small when the quotient is at least 2, the
remainder non-zero, and the dividend's last digit at most the divisor's (`84=2*36+11`);
the algorithm then goes on from the wrong remainder. The self-check divides both numbers by the
answer and, when both divide, shows a factor the quotients still share (`84/1=84, 36/1=36, 84/2=42,
36/2=18 ✗`), so a wrong divisor is always caught.
"""

from __future__ import annotations

import random

from tinyseek.tasks.base import Problem, check_language
from tinyseek.tasks.reasoning import ReverseCheckedTask, Slip, check_difficulty, check_line

QUESTION = {
    "en": "Find the greatest common divisor of {a} and {b}.",
    "fr": "Trouvez le plus grand diviseur commun de {a} et {b}.",
    "zh": "求 {a} 和 {b} 的最大公约数。",
}


def euclid_lines(a: int, b: int, slip: Slip) -> tuple[list[tuple[int, int, int, int]], int]:
    """Rows (dividend, quotient, divisor, remainder) as written, and the answer they give."""
    rows = []
    while b:
        q, r = divmod(a, b)
        if slip(q >= 2 and r >= 1 and a % 10 <= b % 10):
            r -= 1
        rows.append((a, q, b, r))
        a, b = b, r
    return rows, a


class GcdTask(ReverseCheckedTask):
    """Greatest common divisor of two numbers below 10^(d+1) by Euclid's algorithm."""

    name = "gcd"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        limit = 10 ** (check_difficulty(difficulty) + 1)
        while True:
            g = rng.randrange(2, 13)
            a, b = rng.randrange(10, limit) // g * g, rng.randrange(10, limit) // g * g
            if a != b and min(a, b) >= 10:
                break
        a, b = max(a, b), min(a, b)
        return Problem(self.name, f"gcd({a},{b})", str(_gcd(a, b)), {"a": a, "b": b})

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        return QUESTION[check_language(lang)].format(a=problem.data["a"], b=problem.data["b"])

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        rows, answer = euclid_lines(problem.data["a"], problem.data["b"], slip)
        return [f"{a}={q}*{b}+{r}" for a, q, b, r in rows], str(answer)

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        """Divide both numbers by the answer; if both divide, show any factor the quotients share."""
        a, b, g = problem.data["a"], problem.data["b"], int(answer)
        if g <= 0:
            return check_line(lang, [f"{g}≤0"], False), False
        (qa, ra), (qb, rb) = divmod(a, g), divmod(b, g)
        shown = [_division(a, g), _division(b, g)]
        common = _gcd(qa, qb)
        if ra or rb or common == 1:
            ok = not (ra or rb)
            return check_line(lang, shown, ok), ok
        p = _smallest_prime_factor(common)
        return check_line(lang, [*shown, _division(qa, p), _division(qb, p)], False), False


def _division(n: int, d: int) -> str:
    q, r = divmod(n, d)
    return f"{n}/{d}={q}" + (f" r{r}" if r else "")


def _smallest_prime_factor(n: int) -> int:
    return next(p for p in range(2, n + 1) if n % p == 0)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
