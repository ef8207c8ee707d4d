"""Token log-probabilities in OpenAI's two shapes: chat (`content: [{token, logprob, bytes, ...}]`)
and legacy completions (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

Design choices:
- `bytes` are the token's exact UTF-8 bytes, so a client can rebuild text that is cut inside a
  multi-byte character. For byte-level BPE the vocabulary string is mapped back through the
  byte-to-printable-character table that byte-level BPE is defined with (printable Latin-1 bytes
  stand for themselves, the other 68 bytes for code points 256 onwards); added tokens (`</think>`,
  the chat markers) are their literal text. `token` is those bytes decoded, U+FFFD where cut.
- The engine reports, per token, a dict of the sampled token and the k most likely ones (raw model
  distribution); `top_logprobs` is the k best of it by value. A token the server forces (the
  `</think>` that closes a reasoning budget) has no model probability: it gets logprob 0.0 and no
  alternatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from tinyseek.serve.protocol import CompletionLogprobs, TokenLogprob, TopLogprob


def _byte_level_alphabet() -> dict[str, int]:
    """Printable stand-in character -> byte, as byte-level BPE vocabularies spell bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class TokenBytes:
    """Exact bytes and display text of token ids, for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, bytes] = {}

    @cached_property
    def _added(self) -> set[int]:
        return set(self.tokenizer.backend.get_added_tokens_decoder())

    @cached_property
    def _alphabet(self) -> dict[str, int]:
        return _byte_level_alphabet()

    def bytes_of(self, token_id: int) -> bytes:
        cached = self._cache.get(token_id)
        if cached is not None:
            return cached
        piece = self.tokenizer.backend.id_to_token(token_id)
        if piece is None:
            raw = b""
        elif token_id in self._added:
            raw = piece.encode()
        elif all(ch in self._alphabet for ch in piece):
            raw = bytes(self._alphabet[ch] for ch in piece)
        else:
            raw = self.tokenizer.decode([token_id]).encode()
        self._cache[token_id] = raw
        return raw

    def text_of(self, token_id: int) -> str:
        return self.bytes_of(token_id).decode("utf-8", errors="replace")

    def _top(self, entry: Mapping[int, float], k: int) -> list[tuple[int, float]]:
        return sorted(entry.items(), key=lambda kv: -kv[1])[:k]

    def chat_entries(
        self, token_ids: Sequence[int], logprobs: Sequence[Mapping[int, float]], k: int
    ) -> list[TokenLogprob]:
        """One chat logprob entry per token, with its k best alternatives."""
        out = []
        for token, entry in zip(token_ids, logprobs, strict=True):
            out.append(
                TokenLogprob(
                    token=self.text_of(token),
                    logprob=entry.get(token, 0.0),
                    bytes=list(self.bytes_of(token)),
                    top_logprobs=[
                        TopLogprob(token=self.text_of(t), logprob=v, bytes=list(self.bytes_of(t)))
                        for t, v in self._top(entry, k)
                    ],
                )
            )
        return out

    def completion_logprobs(
        self, token_ids: Sequence[int], logprobs: Sequence[Mapping[int, float]], k: int, start_offset: int = 0
    ) -> CompletionLogprobs:
        """Legacy completions shape: parallel lists, text offsets counted in characters."""
        tokens = [self.text_of(t) for t in token_ids]
        offsets, at = [], start_offset
        for text in tokens:
            offsets.append(at)
            at += len(text)
        return CompletionLogprobs(
            tokens=tokens,
            token_logprobs=[entry.get(t, 0.0) for t, entry in zip(token_ids, logprobs, strict=True)],
            top_logprobs=[{self.text_of(t): v for t, v in self._top(entry, k)} for entry in logprobs]
            if k
            else None,
            text_offset=offsets,
        )
