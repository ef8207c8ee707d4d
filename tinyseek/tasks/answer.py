"""Reading the final answer out of a completion, and comparing numeric answers exactly.

Extraction rules (one policy for every task, so rewards are comparable):
- The LAST `<answer>...</answer>` counts: a model that revises itself ends with its final answer, and
  an early guess must not earn a reward. A `\\boxed{}` inside that tag is unwrapped.
- Without an answer tag, the last `\\boxed{...}` counts (MATH-style completions), braces balanced.
- Neither present (or an unclosed tag): no answer, reward 0. We never guess "the last number in the
  text", which would reward answers the model did not commit to.

Numbers compare as exact rationals: `0.5`, `1/2`, `\\frac{1}{2}` and ` 1 / 2 ` are equal; leading
zeros, a leading `+`, the Unicode minus, thousands separators (`1,234` and `1 234`), `$...$` and a
leading `x =` are accepted. Floats are never used, so `0.1 + 0.2`-style rounding cannot leak in.
"""

from __future__ import annotations

import re
from fractions import Fraction

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"(\d+(\.\d*)?|\.\d+)")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_VARIABLE_PREFIX = re.compile(r"^[a-zA-Z]\s*=")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_answer(completion: str) -> str | None:
    """The answer the completion commits to (see module docstring), stripped; None when absent."""
    tags = _ANSWER_TAG.findall(completion)
    if tags:
        inner = tags[-1]
        boxed = last_boxed(inner)
        return (boxed if boxed is not None else inner).strip()
    boxed = last_boxed(completion)
    return None if boxed is None else boxed.strip()


def parse_number(text: str) -> Fraction | None:
    """An exact rational from an answer string, or None if it is not a plain number or fraction."""
    s = text.strip().strip("$").strip()
    s = _VARIABLE_PREFIX.sub("", s).strip()
    s = s.replace("\u2212", "-").replace("\\left", "").replace("\\right", "")
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1].strip()
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:].strip()
    frac = _FRAC.fullmatch(s)
    if frac:
        numerator, denominator = frac.groups()
    elif s.count("/") == 1:
        numerator, denominator = s.split("/")
    else:
        numerator, denominator = s, "1"
    top, bottom = _parse_decimal(numerator), _parse_decimal(denominator)
    if top is None or bottom is None or bottom == 0:
        return None
    return sign * top / bottom


def _parse_decimal(text: str) -> Fraction | None:
    s = text.strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = re.sub(r"(?<=\d)[ \u202f\u00a0](?=\d{3}\b)", "", s)
    if not _NUMBER.fullmatch(s):
        return None
    return Fraction(s)


def format_number(value: Fraction | int) -> str:
    """Canonical answer text: `5`, `-3`, `7/2` (lowest terms, sign in front)."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def numbers_equal(candidate: str | None, reference: str) -> bool:
    """True when both parse as numbers with the same exact value."""
    if candidate is None:
        return False
    got, want = parse_number(candidate), parse_number(reference)
    return got is not None and want is not None and got == want
