"""Does a completion check its own answer? The behaviour R1-Zero-style RL is expected to grow.

The procedural task families (tinyseek.tasks.reasoning) write verification lines that start with
`CHECK[lang]` (`Check: `, `Vérification : `, `验算：`): one per column for addition and multiplication,
one at the end for the others, followed, when it fails, by a `REDO[lang]` line and the work again. A completion self-checks when one of its reasoning lines starts with a check
marker in any language: the model may switch language, and a marker in the middle of a line (e.g.
an echo of the question) is not a verification step. Only the reasoning counts: text after
`</think>` (the answer part) is ignored when the tag is present, so an answer that merely quotes the
word cannot pass for a check.
"""

from __future__ import annotations

from collections.abc import Iterable

from tinyseek.chat_template import THINK_CLOSE
from tinyseek.tasks.reasoning import CHECK, REDO

CHECK_MARKERS = tuple(sorted({marker.strip() for marker in CHECK.values()}))
REDO_MARKERS = tuple(sorted({marker.strip() for marker in REDO.values()}))


def _reasoning_lines(completion: str) -> list[str]:
    reasoning = completion.split(THINK_CLOSE, 1)[0]
    return [line.strip() for line in reasoning.splitlines()]


def _starts_a_line(completion: str, markers: tuple[str, ...]) -> bool:
    return any(line.startswith(markers) for line in _reasoning_lines(completion))


def is_self_checking(completion: str) -> bool:
    """True when a reasoning line of `completion` starts with a check marker (any language)."""
    return _starts_a_line(completion, CHECK_MARKERS)


def is_redoing(completion: str) -> bool:
    """True when the reasoning redoes its work after a failed check (a line starting with a redo marker)."""
    return _starts_a_line(completion, REDO_MARKERS)


def self_check_share(completions: Iterable[str]) -> float:
    """Share of completions that self-check; 0.0 for an empty batch (nothing was checked)."""
    flags = [is_self_checking(text) for text in completions]
    return sum(flags) / len(flags) if flags else 0.0
