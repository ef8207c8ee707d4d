"""Splitting a completion into reasoning and answer, and checking its format.

Two formats, named by `style`:
- `think` (R1 chat template): the prompt ends with the forced `<think>\\n`, so the completion as
  generated has NO opening tag: `reasoning</think>answer`. Well formed = exactly one `</think>`, no
  `<think>`, non-blank reasoning before it and a non-blank answer after it.
- `think_answer` (R1-Zero template, prompt ends with `Assistant:`):
  `<think>reasoning</think><answer>answer</answer>`, whitespace allowed around the tags, exactly one of
  each tag, both contents non-blank, nothing after `</answer>`.

For both, the reasoning is the text before the first `</think>` (a leading `<think>` removed) and the
answer section is everything after it; an unclosed reasoning (typically a truncated completion) has the
whole text as reasoning and no answer section. Rewards and evaluation share this one parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FormatStyle = Literal["think", "think_answer"]
FORMAT_STYLES: tuple[FormatStyle, ...] = ("think", "think_answer")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_THINK_ANSWER = re.compile(
    r"\s*<think>(?P<reasoning>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL
)


@dataclass(frozen=True)
class ParsedCompletion:
    reasoning: str
    answer: str | None  # text after `</think>`; None when the reasoning was never closed
    well_formed: bool


def check_style(style: str) -> FormatStyle:
    if style not in FORMAT_STYLES:
        raise ValueError(f"unknown format style {style!r}; expected one of {', '.join(FORMAT_STYLES)}")
    return style  # type: ignore[return-value]


def parse_completion(text: str, style: FormatStyle = "think") -> ParsedCompletion:
    """The reasoning, the answer section and whether the completion follows `style` exactly."""
    check_style(style)
    head, closed, tail = text.partition(THINK_CLOSE)
    stripped = head.lstrip()
    reasoning = stripped[len(THINK_OPEN) :] if stripped.startswith(THINK_OPEN) else head
    answer = tail if closed else None
    if style == "think":
        well_formed = (
            bool(closed)
            and text.count(THINK_CLOSE) == 1
            and THINK_OPEN not in text
            and bool(head.strip())
            and bool(tail.strip())
        )
    else:
        match = _THINK_ANSWER.fullmatch(text)
        well_formed = (
            match is not None
            and all(text.count(tag) == 1 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE))
            and bool(match["reasoning"].strip())
            and bool(match["answer"].strip())
        )
    return ParsedCompletion(reasoning=reasoning, answer=answer, well_formed=well_formed)
