"""What a completion is: the prompt template it answers, its reasoning and answer, its format.

Rewards (tinyseek.rl) and evaluation (tinyseek.eval) both read completions through this one module,
so a completion scores the same during training and in a report.

Templates: `r1zero` is the R1-Zero plain-text template for base models (no chat tokens); `chat` is
the R1 chat template, whose generation prompt already opens `<think>\\n`. Generation stops where the
template's answer ends (R1-Zero: at `</answer>`, put back into the text by the caller); the chat
template ends on EOS.

Two formats, named by `style` (`TEMPLATE_STYLES` maps a template to its style):
- `think` (R1 chat template): the prompt ends with the forced `<think>\\n`, so the completion as
  generated has NO opening tag: `reasoning</think>answer`. Well formed = exactly one `</think>`, no
  `<think>`, non-blank reasoning before it and a non-blank answer after it.
- `think_answer` (R1-Zero template, prompt ends with `Assistant:`):
  `<think>reasoning</think><answer>answer</answer>`, whitespace allowed around the tags, exactly one of
  each tag, both contents non-blank, nothing after `</answer>`.

For both, the reasoning is the text before the first `</think>` (a leading `<think>` removed) and the
answer section is everything after it; an unclosed reasoning (typically a truncated completion) has the
whole text as reasoning and no answer section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from tinyseek.chat_template import THINK_CLOSE, THINK_OPEN, r1_zero_prompt
from tinyseek.tasks.base import Problem, Task

FormatStyle = Literal["think", "think_answer"]
FORMAT_STYLES: tuple[FormatStyle, ...] = ("think", "think_answer")
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
Template = Literal["r1zero", "chat"]
TEMPLATES: tuple[Template, ...] = ("r1zero", "chat")
TEMPLATE_STYLES: dict[Template, FormatStyle] = {"r1zero": "think_answer", "chat": "think"}
TEMPLATE_STOPS: dict[Template, tuple[str, ...]] = {"r1zero": (ANSWER_CLOSE,), "chat": ()}
_THINK_ANSWER = re.compile(
    r"\s*<think>(?P<reasoning>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL
)


@dataclass(frozen=True)
class ParsedCompletion:
    reasoning: str
    answer: str | None  # text after `</think>`; None when the reasoning was never closed
    well_formed: bool


@dataclass(frozen=True)
class PromptItem:
    """One problem as the model sees it: the question text, the rendered prompt and its token ids."""

    task: Task
    problem: Problem
    question: str
    text: str
    token_ids: list[int]
    lang: str


def check_template(template: str) -> Template:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")
    return template  # type: ignore[return-value]


def default_template(tokenizer: Any) -> Template:
    """`chat` when the tokenizer carries a chat template, else the R1-Zero template for base models."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "r1zero"


def render_prompt(tokenizer: Any, question: str, template: Template) -> tuple[str, list[int]]:
    """The prompt text and ids (BOS included) the model sees for a question under `template`."""
    if template == "r1zero":
        text = r1_zero_prompt(question)
        return text, list(tokenizer.encode(text))
    text = str(tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False))
    return text, list(tokenizer.encode(text, add_special_tokens=False))


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
