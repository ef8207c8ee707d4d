"""Split an R1 completion at `</think>` into reasoning and answer, in one piece or as it streams.

Design choices:
- The R1 generation prompt ends with `<think>\\n`, so a completion starts inside the reasoning:
  everything before the first `</think>` is reasoning, everything after it is the answer, and the
  marker itself belongs to neither. A completion that never closes its reasoning is all reasoning
  (the answer is then empty, which is what a reasoning budget exists to prevent).
- Streaming feeds text deltas of any size: a `</think>` cut across deltas (`</th` + `ink>`) is
  found because the splitter holds back the longest tail that could still grow into the marker,
  and releases it once it cannot (or at `finish`). Concatenating the emitted pieces therefore equals
  the one-piece split exactly.
- A prompt that does not end inside `<think>` (a template without reasoning) uses
  `in_reasoning=False`: all text is answer and no reasoning field is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyseek.chat_template import THINK_CLOSE, THINK_OPEN


@dataclass(frozen=True)
class SplitDelta:
    """What one fed piece released: reasoning text, answer text (either may be empty)."""

    reasoning: str = ""
    content: str = ""


def split_reasoning(text: str, in_reasoning: bool = True) -> tuple[str | None, str]:
    """(reasoning, content) of a whole completion; reasoning is None when the prompt opened none."""
    if not in_reasoning:
        return None, text
    reasoning, marker, content = text.partition(THINK_CLOSE)
    return reasoning, content if marker else ""


def prompt_opens_reasoning(prompt_text: str) -> bool:
    """True when the rendered prompt ends inside an open `<think>` block (the R1 generation prompt)."""
    tail = prompt_text.rstrip()
    return tail.endswith(THINK_OPEN)


class ReasoningSplitter:
    """Incremental `split_reasoning`: feed text deltas, get reasoning and answer deltas back."""

    def __init__(self, in_reasoning: bool = True) -> None:
        self.in_reasoning = in_reasoning
        self._held = ""

    def feed(self, delta: str) -> SplitDelta:
        """Consume one piece of completion text."""
        if not self.in_reasoning:
            return SplitDelta(content=delta)
        text = self._held + delta
        before, marker, after = text.partition(THINK_CLOSE)
        if marker:
            self.in_reasoning = False
            self._held = ""
            return SplitDelta(reasoning=before, content=after)
        keep = _marker_prefix_length(text)
        self._held = text[len(text) - keep :]
        return SplitDelta(reasoning=text[: len(text) - keep])

    def finish(self) -> SplitDelta:
        """Release text held back as a possible marker start: the completion ended without it."""
        held, self._held = self._held, ""
        return SplitDelta(reasoning=held)


def _marker_prefix_length(text: str) -> int:
    """Length of the longest tail of `text` that is a proper prefix of `</think>`."""
    for size in range(min(len(text), len(THINK_CLOSE) - 1), 0, -1):
        if THINK_CLOSE.startswith(text[-size:]):
            return size
    return 0
