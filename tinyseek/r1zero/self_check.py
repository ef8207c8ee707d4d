"""Does a completion check its own answer? The behaviour R1-Zero-style RL is expected to grow.

A self-check is a verification step *with a verdict*: a reasoning line that starts with a check
marker (`CHECK[lang]`: `Check: `, `Vérification : `, `验算：`) and, on that line or a later reasoning
line, a verdict mark (✓ or ✗). The procedural families write exactly that: the column families do
the work again after `Check: 467+358.` and compare (`825 = 825 ✓`); the others check one line by the
reverse operation (`Check: 358+467=825 ✓`). What does not count, each a near-miss the tests label:
- a check marker that ends in nothing (a vestigial `Check:` line with no verdict after it);
- a verdict with no check before it (a leftover `1542 ✗ → 1542` line);
- the marker in the middle of a line (an echo of the question), or after `</think>` (the answer part,
  which may quote the word without verifying anything).
Any language's marker counts, since the model may switch language.
"""

from __future__ import annotations

from collections.abc import Iterable

from tinyseek.chat_template import THINK_CLOSE
from tinyseek.tasks.reasoning import BAD_MARK, CHECK, OK_MARK, REDO

CHECK_MARKERS = tuple(sorted({marker.strip() for marker in CHECK.values()}))
REDO_MARKERS = tuple(sorted({marker.strip() for marker in REDO.values()}))
VERDICTS = (OK_MARK, BAD_MARK)


def _reasoning_lines(completion: str) -> list[str]:
    reasoning = completion.split(THINK_CLOSE, 1)[0]
    return [line.strip() for line in reasoning.splitlines()]


def is_self_checking(completion: str) -> bool:
    """True when a reasoning line starts with a check marker and a verdict follows (same or later line)."""
    lines = _reasoning_lines(completion)
    for i, line in enumerate(lines):
        if line.startswith(CHECK_MARKERS):
            return any(mark in later for later in lines[i:] for mark in VERDICTS)
    return False


def is_redoing(completion: str) -> bool:
    """True when the reasoning redoes its work after a failed check (a line starting with a redo marker)."""
    return any(line.startswith(REDO_MARKERS) for line in _reasoning_lines(completion))


def self_check_share(completions: Iterable[str]) -> float:
    """Share of completions that self-check; 0.0 for an empty batch (nothing was checked)."""
    flags = [is_self_checking(text) for text in completions]
    return sum(flags) / len(flags) if flags else 0.0
