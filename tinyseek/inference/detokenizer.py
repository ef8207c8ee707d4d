"""IncrementalDetokenizer: text deltas for streaming, and stop strings, without re-decoding everything.

Design choices:
- Decodes a short window of recent tokens (`prefix_offset:`) and emits what extends the window's
  previous text, the method vLLM and TGI use; a trailing U+FFFD means an incomplete UTF-8 character,
  so nothing is emitted until the next token completes it.
- Stop strings: the text is searched only where a new match could start; on a match the text is cut
  before the stop string (it is not part of the output). While running, the last
  `len(longest stop) - 1` characters are held back, so a streamed prefix is never taken back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, stop: Sequence[str], skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.stop = list(stop)
        self.skip = skip_special_tokens
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.prefix_offset = self.read_offset = 0
        self.text = ""
        self.emitted = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=self.skip))

    def add(self, output_ids: Sequence[int]) -> bool:
        """Account for the newest token of `output_ids`; True when a stop string completed."""
        prefix = self._decode(output_ids[self.prefix_offset : self.read_offset])
        window = self._decode(output_ids[self.prefix_offset :])
        if len(window) <= len(prefix) or window.endswith("\ufffd"):
            return False
        new = window[len(prefix) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(output_ids)
        search_from = max(0, len(self.text) - self.hold)
        self.text += new
        hits = [i for i in (self.text.find(s, search_from) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            return True
        return False

    def take(self, finished: bool) -> str:
        """Text not yet handed out (all of it once finished, else all but the held-back tail)."""
        end = len(self.text) if finished else max(self.emitted, len(self.text) - self.hold)
        out, self.emitted = self.text[self.emitted : end], end
        return out
