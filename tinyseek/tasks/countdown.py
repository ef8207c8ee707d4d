"""Countdown: reach a target from given numbers with + - * /, each number used at most once.

Generation chains all d + 2 numbers (difficulty d) left to right with random operations that keep
every intermediate a positive integer, so a solution always exists (* and / are drawn more often
than + and -, which keeps plain sums rare); the trace shows that chain one
operation per line (`25+4=29`, `29*3=87`) and the answer is the full expression `(25+4)*3`.

Verification never calls eval: the answer is parsed with `ast` and only integer literals, + - * /
and parentheses are accepted, evaluated with exact fractions (intermediate fractions allowed, the
final value must equal the target). Each given number may be used at most once (a multiset check);
an `= target` tail is ignored, and `×`, `÷`, `−` are read as `*`, `/`, `-`.

Systematic slip: the parentheses around an additive sub-expression are dropped when it is multiplied
or divided by an odd number or one below 6 (`25+4*3`), the classic precedence error. The self-check evaluates the
expression written.
"""

from __future__ import annotations

import ast
import random
from collections import Counter
from fractions import Fraction

from tinyseek.tasks.answer import format_number
from tinyseek.tasks.base import Problem, check_language
from tinyseek.tasks.reasoning import ReverseCheckedTask, Slip, check_difficulty, check_line

QUESTION = {
    "en": "Using the numbers {numbers}, make {target} with + - * / (each number at most once).",
    "fr": "Avec les nombres {numbers}, obtenez {target} avec + - * / (chaque nombre au plus une fois).",
    "zh": "用数字 {numbers} 和 + - * / 得到 {target}（每个数字最多用一次）。",
}
SEPARATOR = {"en": ", ", "fr": ", ", "zh": "、"}
MAX_EXPRESSION_CHARS = 200
MAX_VALUE = 1000
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]]:
    """Exact value of an arithmetic expression and the integer literals it uses.

    Raises ValueError for anything but integers, + - * /, parentheses, or a division by zero.
    """
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-").split("=")[0].strip()
    if not text or len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(
            f"expected an expression of 1..{MAX_EXPRESSION_CHARS} characters, got {expression!r}"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from err
    literals: list[int] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if right == 0:
                raise ValueError(f"division by zero in {expression!r}")
            return left / right
        raise ValueError(f"only integers, + - * / and parentheses are allowed, got {ast.dump(node)[:60]}")

    return value(tree.body), literals


def uses_available_numbers(used: list[int], available: list[int]) -> bool:
    """Each available number at most once (as many times as it is given)."""
    return not Counter(used) - Counter(available)


def _apply(op: str, x: int, y: int) -> int:
    return {"+": x + y, "-": x - y, "*": x * y, "/": x // y}[op]


class CountdownTask(ReverseCheckedTask):
    """Reach a target from d + 2 numbers with + - * /, each number at most once."""

    name = "countdown"

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        count = check_difficulty(difficulty) + 2
        while True:
            numbers = [rng.randrange(1, 26) for _ in range(count)]
            value, steps = numbers[0], []
            for n in numbers[1:]:
                choices = ["+"]
                if value > n:
                    choices.append("-")
                if value * n <= MAX_VALUE and n > 1:
                    choices += ["*", "*"]
                if n > 1 and value % n == 0:
                    choices += ["/", "/", "/"]
                op = rng.choice(choices)
                steps.append((op, n))
                value = _apply(op, value, n)
            if value not in numbers:
                break
        shown = sorted(numbers)
        canonical = f"{','.join(map(str, shown))}->{value}"
        data = {"numbers": shown, "target": value, "start": numbers[0], "steps": steps}
        return Problem(self.name, canonical, self._expression(numbers[0], steps, lambda p: False), data)

    @staticmethod
    def _expression(start: int, steps: list[tuple[str, int]], slip: Slip) -> str:
        """The chain as one expression with minimal parentheses (dropped where `slip` says)."""
        text, additive = str(start), False
        for op, n in steps:
            if op in "+-":
                additive = True
            elif additive and not slip(n % 2 == 1 or n < 6):
                text, additive = f"({text})", False
            text += f"{op}{n}"
        return text

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        numbers = SEPARATOR[check_language(lang)].join(map(str, problem.data["numbers"]))
        return QUESTION[lang].format(numbers=numbers, target=problem.data["target"])

    def work(self, problem: Problem, lang: str, slip: Slip) -> tuple[list[str], str]:
        value, lines = problem.data["start"], []
        for op, n in problem.data["steps"]:
            result = _apply(op, value, n)
            lines.append(f"{value}{op}{n}={result}")
            value = result
        return lines, self._expression(problem.data["start"], problem.data["steps"], slip)

    def check(self, problem: Problem, answer: str, lang: str) -> tuple[str, bool]:
        value, _ = evaluate_expression(answer)
        ok = self.is_correct(problem, answer)
        return check_line(lang, [f"{answer}={format_number(value)}"], ok), ok

    def is_correct(self, problem: Problem, answer: str | None) -> bool:
        if answer is None:
            return False
        try:
            value, used = evaluate_expression(answer)
        except ValueError:
            return False
        return value == problem.data["target"] and uses_available_numbers(used, problem.data["numbers"])
