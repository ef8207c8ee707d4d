"""Coding tasks: write a small Python function; hidden tests run it in the sandbox.

Each problem comes from a parameterized template (digit sums in some base, counting letters,
reversing words, running aggregates, FizzBuzz variants, Caesar shifts, gcd/lcm, linear
recurrences, counting multiples) with parameters drawn from the rng, so there are thousands of
distinct problems. The reference solution is Python source built from the parameters; the hidden
tests are inputs drawn from an rng seeded by the canonical problem, and their expected values come
from running that reference in this process (it is our own code, so no sandbox is needed).

Scoring takes the last fenced ```python block of the answer (the text after the last </think>),
runs its function on the hidden inputs in the sandbox (tinyseek.sandbox), and returns the share
of tests passed, or 1/0 with all_or_nothing=True. Difficulty 1 draws the simple templates only;
each level adds harder ones.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tinyseek.sandbox import FunctionTests, Limits, SandboxPool, run_function_tests
from tinyseek.tasks.base import LANGUAGES, Problem, Task

Params = dict[str, Any]
Args = list[Any]

CODE_BLOCK = re.compile(r"```(?:python3?|py)[^\n]*\n(.*?)```", re.DOTALL)
TESTS_PER_PROBLEM = 10
CODING_LIMITS = Limits(wall_seconds=4.0, cpu_seconds=2, memory_bytes=256 << 20, tmpfs_bytes=8 << 20)

INTRO = {
    "en": "Write a Python function `{signature}` that {what}",
    "fr": "Écrivez une fonction Python `{signature}` qui {what}",
    "zh": "编写一个 Python 函数 `{signature}`：{what}",
}
EXAMPLE = {
    "en": "Example: {call} returns {result}.",
    "fr": "Exemple : {call} renvoie {result}.",
    "zh": "示例：{call} 返回 {result}。",
}
FORMAT = {
    "en": "Give the code in a ```python block.",
    "fr": "Donnez le code dans un bloc ```python.",
    "zh": "请把代码写在 ```python 代码块中。",
}
PLAN = {"en": "Plan:", "fr": "Méthode :", "zh": "思路："}


@dataclass(frozen=True)
class Template:
    """One family of function-writing problems; every callable takes the drawn parameters."""

    name: str
    level: int
    signature: str  # as the prompt shows it, e.g. "count_multiples(lo, hi)"
    draw_params: Callable[[random.Random], Params]
    what: dict[str, str]  # per language, formatted with the parameters (and their reprs as *_r)
    plan: dict[str, str]
    source: Callable[[Params], str]
    draw_input: Callable[[random.Random, Params], Args]
    edge_inputs: Callable[[Params], list[Args]]

    @property
    def function(self) -> str:
        """The name the hidden tests call."""
        return self.signature.partition("(")[0]


def _words(rng: random.Random, alphabet: str, sep: str, n_max: int) -> str:
    words = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(0, n_max))
    ]
    return sep.join(words)


def _digit_power_sum_source(p: Params) -> str:
    return (
        "def digit_power_sum(n):\n"
        "    total = 0\n"
        "    while n > 0:\n"
        f"        total += (n % {p['base']}) ** {p['power']}\n"
        f"        n //= {p['base']}\n"
        "    return total\n"
    )


def _count_letters_source(p: Params) -> str:
    text = "s.lower()" if p["ignore_case"] else "s"
    return f"def count_letters(s):\n    return sum(1 for c in {text} if c in {p['letters']!r})\n"


def _reverse_words_source(p: Params) -> str:
    case = {"keep": "", "upper": ".upper()", "lower": ".lower()"}[p["case"]]
    return (
        "def reverse_words(s):\n"
        f"    words = [w for w in s.split({p['sep']!r}) if w]\n"
        f"    return {p['joiner']!r}.join(reversed(words)){case}\n"
    )


def _running_source(p: Params) -> str:
    start = f"max(0, i - {p['window'] - 1})" if p["window"] else "0"
    return f"def running(xs):\n    return [{p['op']}(xs[{start} : i + 1]) for i in range(len(xs))]\n"


def _fizzbuzz_source(p: Params) -> str:
    a, b = p["a"], p["b"]
    return (
        "def fizzbuzz(n):\n"
        "    out = []\n"
        "    for i in range(1, n + 1):\n"
        f"        if i % {a} == 0 and i % {b} == 0:\n"
        f"            out.append({p['word_a'] + p['word_b']!r})\n"
        f"        elif i % {a} == 0:\n"
        f"            out.append({p['word_a']!r})\n"
        f"        elif i % {b} == 0:\n"
        f"            out.append({p['word_b']!r})\n"
        "        else:\n"
        "            out.append(str(i))\n"
        "    return out\n"
    )


def _caesar_source(p: Params) -> str:
    return (
        "def caesar(s):\n"
        "    out = []\n"
        "    for c in s:\n"
        "        if c.isascii() and c.isalpha():\n"
        "            base = ord('a') if c.islower() else ord('A')\n"
        f"            out.append(chr(base + (ord(c) - base + {p['shift']}) % 26))\n"
        "        else:\n"
        "            out.append(c)\n"
        "    return ''.join(out)\n"
    )


def _fold_source(p: Params) -> str:
    if p["op"] == "gcd":
        return "import math\n\ndef fold(xs):\n    return math.gcd(*xs)\n"
    return f"import math\n\ndef fold(xs):\n    return math.lcm(*xs) % {p['modulus']}\n"


def _recurrence_source(p: Params) -> str:
    return (
        "def term(n):\n"
        f"    a, b = {p['a0']}, {p['a1']}\n"
        "    for _ in range(n):\n"
        f"        a, b = b, ({p['c1']} * b + {p['c2']} * a) % {p['modulus']}\n"
        "    return a\n"
    )


def _count_multiples_source(p: Params) -> str:
    return (
        "def count_multiples(lo, hi):\n"
        f"    return sum(1 for k in range(lo, hi + 1) if k % {p['a']} == 0 and k % {p['b']} != 0)\n"
    )


LETTERS = "abcdefghijklmnopqrstuvwxyz"
SEPARATORS = (" ", ",", "-", ";", "/", "_")
WORD_PAIRS = (("Fizz", "Buzz"), ("Ping", "Pong"), ("Foo", "Bar"), ("Tic", "Tac"), ("Yin", "Yang"))

TEMPLATES: tuple[Template, ...] = (
    Template(
        name="digit_power_sum",
        level=1,
        signature="digit_power_sum(n)",
        draw_params=lambda rng: {"base": rng.randint(2, 16), "power": rng.randint(1, 3)},
        what={
            "en": "returns the sum of the digits of the integer n >= 0 written in base {base}, each digit raised to the power {power}.",
            "fr": "renvoie la somme des chiffres de l'entier n >= 0 écrit en base {base}, chaque chiffre élevé à la puissance {power}.",
            "zh": "返回非负整数 n 在 {base} 进制下每一位数字的 {power} 次方之和。",
        },
        plan={
            "en": "take n % {base} for the last digit, add its power {power}, divide n by {base}, repeat until n is 0.",
            "fr": "n % {base} donne le dernier chiffre ; on ajoute sa puissance {power}, on divise n par {base}, jusqu'à n = 0.",
            "zh": "用 n % {base} 取最低位，累加它的 {power} 次方，再把 n 整除 {base}，直到 n 为 0。",
        },
        source=_digit_power_sum_source,
        draw_input=lambda rng, p: [rng.randint(0, 10 ** rng.randint(1, 7))],
        edge_inputs=lambda p: [[0], [p["base"] - 1], [p["base"]]],
    ),
    Template(
        name="count_letters",
        level=1,
        signature="count_letters(s)",
        draw_params=lambda rng: {
            "letters": "".join(sorted(rng.sample(LETTERS, rng.randint(2, 5)))),
            "ignore_case": rng.random() < 0.5,
        },
        what={
            "en": "returns how many characters of the string s are among the letters {letters_r}{case_en}.",
            "fr": "renvoie le nombre de caractères de la chaîne s qui font partie des lettres {letters_r}{case_fr}.",
            "zh": "返回字符串 s 中属于字母 {letters_r} 的字符个数{case_zh}。",
        },
        plan={
            "en": "walk over the characters{case_en} and count those in {letters_r}.",
            "fr": "parcourir les caractères{case_fr} et compter ceux qui sont dans {letters_r}.",
            "zh": "逐个检查字符{case_zh}，统计属于 {letters_r} 的个数。",
        },
        source=_count_letters_source,
        draw_input=lambda rng, p: [_words(rng, LETTERS + LETTERS.upper(), " ", 6)],
        edge_inputs=lambda p: [[""], [p["letters"].upper()]],
    ),
    Template(
        name="reverse_words",
        level=1,
        signature="reverse_words(s)",
        draw_params=lambda rng: {
            "sep": rng.choice(SEPARATORS),
            "joiner": rng.choice(SEPARATORS),
            "case": rng.choice(("keep", "upper", "lower")),
        },
        what={
            "en": "splits s into the non-empty words separated by {sep_r}, and returns them in reverse order joined by {joiner_r}{case_en}.",
            "fr": "découpe s en mots non vides séparés par {sep_r} et les renvoie dans l'ordre inverse, joints par {joiner_r}{case_fr}.",
            "zh": "把 s 按 {sep_r} 分成非空单词，倒序后用 {joiner_r} 连接返回{case_zh}。",
        },
        plan={
            "en": "split on {sep_r}, drop empty pieces, reverse, join with {joiner_r}{case_en}.",
            "fr": "couper sur {sep_r}, enlever les morceaux vides, inverser, joindre avec {joiner_r}{case_fr}.",
            "zh": "按 {sep_r} 切分，去掉空串，倒序，用 {joiner_r} 连接{case_zh}。",
        },
        source=_reverse_words_source,
        draw_input=lambda rng, p: [_words(rng, "abcdeXYZ", p["sep"] * rng.randint(1, 2), 6)],
        edge_inputs=lambda p: [[""], [p["sep"] + "Ab" + p["sep"]]],
    ),
    Template(
        name="running",
        level=2,
        signature="running(xs)",
        draw_params=lambda rng: {
            "op": rng.choice(("max", "min", "sum")),
            "window": rng.choice((0, 2, 3, 4, 5)),
        },
        what={
            "en": "returns a list whose element i is the {op} of {span_en} of the integer list xs.",
            "fr": "renvoie une liste dont l'élément i est le {op} {span_fr} de la liste d'entiers xs.",
            "zh": "返回一个列表，其第 i 个元素是整数列表 xs 中{span_zh}的 {op}。",
        },
        plan={
            "en": "for each i, apply {op} to {span_en}.",
            "fr": "pour chaque i, appliquer {op} {span_fr}.",
            "zh": "对每个 i，对{span_zh}取 {op}。",
        },
        source=_running_source,
        draw_input=lambda rng, p: [[rng.randint(-50, 50) for _ in range(rng.randint(1, 12))]],
        edge_inputs=lambda p: [[[]], [[7]]],
    ),
    Template(
        name="fizzbuzz",
        level=2,
        signature="fizzbuzz(n)",
        draw_params=lambda rng: dict(
            zip(("a", "b"), sorted(rng.sample(range(2, 10), 2)), strict=True),
            **dict(zip(("word_a", "word_b"), rng.choice(WORD_PAIRS), strict=True)),
        ),
        what={
            "en": "returns the list of strings for i = 1..n: {word_a_r}+{word_b_r} joined when i is a multiple of both {a} and {b}, {word_a_r} for multiples of {a} only, {word_b_r} for multiples of {b} only, otherwise str(i).",
            "fr": "renvoie la liste de chaînes pour i = 1..n : {word_a_r} suivi de {word_b_r} si i est multiple de {a} et de {b}, {word_a_r} pour les multiples de {a} seulement, {word_b_r} pour ceux de {b} seulement, sinon str(i).",
            "zh": "返回 i = 1..n 的字符串列表：i 同时是 {a} 和 {b} 的倍数时为 {word_a_r} 接 {word_b_r}，只是 {a} 的倍数时为 {word_a_r}，只是 {b} 的倍数时为 {word_b_r}，否则为 str(i)。",
        },
        plan={
            "en": "loop i from 1 to n and test the multiple of both first, then {a}, then {b}.",
            "fr": "boucler i de 1 à n et tester d'abord les deux diviseurs, puis {a}, puis {b}.",
            "zh": "i 从 1 循环到 n，先判断同时整除，再判断 {a}，再判断 {b}。",
        },
        source=_fizzbuzz_source,
        draw_input=lambda rng, p: [rng.randint(1, 40)],
        edge_inputs=lambda p: [[0], [1], [p["a"] * p["b"]]],
    ),
    Template(
        name="caesar",
        level=2,
        signature="caesar(s)",
        draw_params=lambda rng: {"shift": rng.randint(1, 25)},
        what={
            "en": "shifts every ASCII letter of s forward by {shift} places in the alphabet (wrapping around, keeping its case) and leaves other characters unchanged.",
            "fr": "décale chaque lettre ASCII de s de {shift} rangs dans l'alphabet (en revenant au début, en gardant la casse) et laisse les autres caractères tels quels.",
            "zh": "把 s 中每个 ASCII 字母在字母表中向后移动 {shift} 位（循环，保持大小写），其他字符不变。",
        },
        plan={
            "en": "for each letter, new position = (position + {shift}) mod 26 within its case.",
            "fr": "pour chaque lettre, nouvelle position = (position + {shift}) mod 26 dans sa casse.",
            "zh": "对每个字母，新位置 = (原位置 + {shift}) mod 26，大小写不变。",
        },
        source=_caesar_source,
        draw_input=lambda rng, p: [_words(rng, "abcxyzABCXYZ019!", " ", 5)],
        edge_inputs=lambda p: [[""], ["zZ aA"]],
    ),
    Template(
        name="fold",
        level=2,
        signature="fold(xs)",
        draw_params=lambda rng: rng.choice(
            [{"op": "gcd", "modulus": 0}]
            + [{"op": "lcm", "modulus": m} for m in (97, 1000, 10007, 1000000007)]
        ),
        what={
            "en": "returns the {op_en} of the positive integers in the non-empty list xs{mod_en}.",
            "fr": "renvoie le {op_fr} des entiers positifs de la liste non vide xs{mod_fr}.",
            "zh": "返回非空正整数列表 xs 的{op_zh}{mod_zh}。",
        },
        plan={
            "en": "math.{op} accepts several integers; apply it to all of xs{mod_en}.",
            "fr": "math.{op} accepte plusieurs entiers ; l'appliquer à toute la liste{mod_fr}.",
            "zh": "math.{op} 可接受多个整数，对整个列表使用它{mod_zh}。",
        },
        source=_fold_source,
        draw_input=lambda rng, p: [
            [rng.randint(1, 60) * rng.choice((1, 6, 12)) for _ in range(rng.randint(1, 6))]
        ],
        edge_inputs=lambda p: [[[1]], [[12, 18]]],
    ),
    Template(
        name="recurrence",
        level=3,
        signature="term(n)",
        draw_params=lambda rng: {
            "a0": rng.randint(0, 9),
            "a1": rng.randint(0, 9),
            "c1": rng.randint(1, 5),
            "c2": rng.randint(1, 5),
            "modulus": rng.choice((10, 100, 1000, 1000000007)),
        },
        what={
            "en": "returns a(n) mod {modulus} for the sequence a(0) = {a0}, a(1) = {a1}, a(k) = {c1}*a(k-1) + {c2}*a(k-2).",
            "fr": "renvoie a(n) mod {modulus} pour la suite a(0) = {a0}, a(1) = {a1}, a(k) = {c1}*a(k-1) + {c2}*a(k-2).",
            "zh": "对数列 a(0) = {a0}，a(1) = {a1}，a(k) = {c1}*a(k-1) + {c2}*a(k-2)，返回 a(n) mod {modulus}。",
        },
        plan={
            "en": "iterate n times keeping the last two terms, reducing mod {modulus} at every step.",
            "fr": "itérer n fois en gardant les deux derniers termes, réduits mod {modulus} à chaque étape.",
            "zh": "迭代 n 次，只保留最后两项，每步对 {modulus} 取模。",
        },
        source=_recurrence_source,
        draw_input=lambda rng, p: [rng.randint(2, 300)],  # n = 0 and 1 are the edge inputs
        edge_inputs=lambda p: [[0], [1]],
    ),
    Template(
        name="count_multiples",
        level=1,
        signature="count_multiples(lo, hi)",
        draw_params=lambda rng: dict(zip(("a", "b"), rng.sample(range(2, 13), 2), strict=True)),
        what={
            "en": "returns how many integers k with lo <= k <= hi are divisible by {a} but not by {b}.",
            "fr": "renvoie combien d'entiers k avec lo <= k <= hi sont divisibles par {a} mais pas par {b}.",
            "zh": "返回满足 lo <= k <= hi、能被 {a} 整除但不能被 {b} 整除的整数 k 的个数。",
        },
        plan={
            "en": "check each k in the range: k % {a} == 0 and k % {b} != 0.",
            "fr": "tester chaque k de l'intervalle : k % {a} == 0 et k % {b} != 0.",
            "zh": "检查区间内每个 k：k % {a} == 0 且 k % {b} != 0。",
        },
        source=_count_multiples_source,
        draw_input=lambda rng, p: sorted(rng.randint(-100, 400) for _ in range(2)),
        edge_inputs=lambda p: [[5, 4], [p["a"] * p["b"], p["a"] * p["b"]]],
    ),
)
TEMPLATES_BY_NAME = {t.name: t for t in TEMPLATES}

# Phrases that depend on a parameter value rather than being the value itself.
WORDING: dict[str, dict[str, dict[Any, str]]] = {
    "case": {
        "en": {
            "keep": "",
            "upper": ", in upper case",
            "lower": ", in lower case",
            True: " (ignoring case)",
            False: "",
        },
        "fr": {
            "keep": "",
            "upper": ", en majuscules",
            "lower": ", en minuscules",
            True: " (sans tenir compte de la casse)",
            False: "",
        },
        "zh": {
            "keep": "",
            "upper": "（转为大写）",
            "lower": "（转为小写）",
            True: "（不区分大小写）",
            False: "",
        },
    },
    "span": {
        "en": {
            0: "the elements xs[0..i]",
            "w": "the last {window} elements up to xs[i] (fewer at the start)",
        },
        "fr": {
            0: "des éléments xs[0..i]",
            "w": "des {window} derniers éléments jusqu'à xs[i] (moins au début)",
        },
        "zh": {0: "xs[0..i] 这些元素", "w": "截至 xs[i] 的最后 {window} 个元素（开头不足时取全部）"},
    },
    "op": {
        "en": {"gcd": "greatest common divisor", "lcm": "least common multiple"},
        "fr": {"gcd": "plus grand commun diviseur", "lcm": "plus petit commun multiple"},
        "zh": {"gcd": "最大公约数", "lcm": "最小公倍数"},
    },
    "mod": {
        "en": {0: "", "m": ", modulo {modulus}"},
        "fr": {0: "", "m": ", modulo {modulus}"},
        "zh": {0: "", "m": "，再对 {modulus} 取模"},
    },
}


def _fields(params: Params, lang: str) -> dict[str, Any]:
    """Template fields: the parameters, their reprs (`x_r`), and language-dependent phrases."""
    fields: dict[str, Any] = dict(params)
    fields.update({f"{k}_r": repr(v) for k, v in params.items()})
    case = params.get("case", params.get("ignore_case"))
    fields[f"case_{lang}"] = WORDING["case"][lang].get(case, "")
    span = WORDING["span"][lang]
    fields[f"span_{lang}"] = span["w"].format(**params) if params.get("window") else span[0]
    fields[f"op_{lang}"] = WORDING["op"][lang].get(params.get("op", ""), "")
    mod = WORDING["mod"][lang]
    fields[f"mod_{lang}"] = mod["m"].format(**params) if params.get("modulus") else mod[0]
    return fields


def reference_function(source: str, function: str) -> Callable[..., Any]:
    """Our own reference source, executed in-process to compute expected values."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<reference {function}>", "exec"), namespace)
    return namespace[function]


def extract_code(completion: str) -> str | None:
    """The last fenced Python block of the answer (after the last </think> when there is one)."""
    answer = completion.rsplit("</think>", 1)[-1]
    blocks = CODE_BLOCK.findall(answer)
    return blocks[-1] if blocks else None


class CodingTask(Task):
    """Function-writing problems scored by hidden tests run in the sandbox."""

    name = "coding"

    def __init__(
        self,
        all_or_nothing: bool = False,
        limits: Limits = CODING_LIMITS,
        per_test_seconds: float = 1.0,
        allow_unsandboxed: bool = False,
        workers: int | None = None,
    ) -> None:
        self.all_or_nothing = all_or_nothing
        self.limits = limits
        self.per_test_seconds = per_test_seconds
        self.allow_unsandboxed = allow_unsandboxed
        self.workers = workers
        self._pool: SandboxPool | None = None

    def make(self, rng: random.Random, difficulty: int) -> Problem:
        if difficulty < 1:
            raise ValueError(f"difficulty must be >= 1, got {difficulty}")
        template = rng.choice([t for t in TEMPLATES if t.level <= difficulty])
        return self.build(template.name, template.draw_params(rng))

    def build(self, template_name: str, params: Params) -> Problem:
        """The problem for a template and its parameters, with hidden tests derived from both."""
        if template_name not in TEMPLATES_BY_NAME:
            raise ValueError(
                f"unknown coding template {template_name!r}; expected one of {sorted(TEMPLATES_BY_NAME)}"
            )
        template = TEMPLATES_BY_NAME[template_name]
        canonical = json.dumps({"template": template.name, "params": params}, sort_keys=True)
        source = template.source(params)
        reference = reference_function(source, template.function)
        test_rng = random.Random(canonical)
        inputs = template.edge_inputs(params)
        while len(inputs) < TESTS_PER_PROBLEM:
            inputs.append(template.draw_input(test_rng, params))
        example = template.draw_input(test_rng, params)
        data = {
            "template": template.name,
            "params": params,
            "function": template.function,
            "inputs": inputs,
            "expected": [reference(*args) for args in inputs],
            "example": [example, reference(*example)],
        }
        return Problem(task=self.name, canonical=canonical, answer=source, data=data)

    def prompt(self, problem: Problem, lang: str = "en") -> str:
        template = self._template(problem, lang)
        fields = _fields(problem.data["params"], lang)
        example_args, example_result = problem.data["example"]
        call = f"{template.function}({', '.join(repr(a) for a in example_args)})"
        return " ".join(
            [
                INTRO[lang].format(signature=template.signature, what=template.what[lang].format(**fields)),
                EXAMPLE[lang].format(call=call, result=repr(example_result)),
                FORMAT[lang],
            ]
        )

    def solution(self, problem: Problem, lang: str = "en") -> str:
        template = self._template(problem, lang)
        plan = template.plan[lang].format(**_fields(problem.data["params"], lang))
        return f"{PLAN[lang]} {plan}\n<answer>\n```python\n{problem.answer}```\n</answer>"

    def score(self, problem: Problem, completion: str) -> float:
        return self.score_many([problem], [completion])[0]

    def score_many(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float]:
        """Scores for many completions, their test runs spread over a pool of sandbox workers."""
        if len(problems) != len(completions):
            raise ValueError(f"got {len(problems)} problems but {len(completions)} completions")
        codes = [extract_code(c) for c in completions]
        jobs = [
            FunctionTests(code, p.data["function"], p.data["inputs"], self.per_test_seconds)
            for p, code in zip(problems, codes, strict=True)
            if code is not None
        ]
        if len(jobs) == 1:
            runs = [run_function_tests(jobs[0], self.limits, self.allow_unsandboxed)]
        else:
            runs = self._workers().run_function_tests(jobs) if jobs else []
        results = iter(runs)
        scores = []
        for problem, code in zip(problems, codes, strict=True):
            if code is None:
                scores.append(0.0)
                continue
            passed = next(results).passed(problem.data["expected"])
            share = sum(passed) / len(passed)
            scores.append(float(share == 1.0) if self.all_or_nothing else share)
        return scores

    def _workers(self) -> SandboxPool:
        if self._pool is None:
            self._pool = SandboxPool(self.workers, self.limits, self.allow_unsandboxed)
        return self._pool

    def _template(self, problem: Problem, lang: str) -> Template:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")
        return TEMPLATES_BY_NAME[problem.data["template"]]
