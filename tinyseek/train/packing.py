"""Packed training rows: documents tokenized, joined with EOS, cut into rows of seq_len + 1 tokens.

Design choices:
- Each document becomes `BOS prompt completion EOS`; its loss mask is 1 on the tokens a model is
  trained to produce: every token in pretraining, only the completion and its EOS in SFT.
- Pretraining concatenates documents and cuts rows anywhere (no padding, every token used). SFT never
  splits a document: rows are filled greedily with whole documents and the rest padded with mask 0;
  a document longer than a row is a ValueError naming its source (FILE:LINE).
- The packer's state is (documents consumed, the tokens waiting for the next row): a checkpoint stores
  it and a resumed run regenerates the document stream and skips that many documents (without
  tokenizing them), so the rows after a resume are exactly those of the uninterrupted run.
- Distributed runs draw the global batch and keep their rank's slice, so every rank sees the same
  stream position and the data order does not depend on the world size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tinyseek.train.documents import Document


class Packer:
    """Rows `[n, seq_len + 1]` of token ids with a boolean loss mask of the same shape."""

    def __init__(
        self,
        documents: Callable[[], Iterator[Document]],
        tokenizer: Any,
        seq_len: int,
        sft: bool,
        pad_id: int,
    ):
        if seq_len < 2:
            raise ValueError(f"seq_len={seq_len}: expected at least 2")
        self.make_documents, self.tokenizer, self.sft = documents, tokenizer, sft
        self.row = seq_len + 1
        self.pad_id = pad_id
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        if self.eos is None:
            raise ValueError("the tokenizer has no eos_token: documents could not be joined")
        self.consumed = 0
        self.tokens: list[int] = []
        self.mask: list[bool] = []
        self._documents = self.make_documents()

    def encode(self, doc: Document) -> tuple[list[int], list[bool]]:
        """Token ids and loss mask of one document, BOS and EOS included."""
        head = [] if self.bos is None else [self.bos]
        prompt = head + (self.tokenizer.encode(doc.prompt, add_special_tokens=False) if doc.prompt else [])
        completion = self.tokenizer.encode(doc.completion, add_special_tokens=False) + [self.eos]
        trained = not self.sft
        if self.sft and not doc.completion.strip():
            raise ValueError(f"{doc.source}: empty completion (SFT needs a completion to train on)")
        return prompt + completion, [trained] * len(prompt) + [True] * len(completion)

    def _next_document(self) -> tuple[list[int], list[bool]]:
        doc = next(self._documents)
        self.consumed += 1
        ids, mask = self.encode(doc)
        if self.sft and len(ids) > self.row:
            raise ValueError(
                f"{doc.source}: {len(ids)} tokens do not fit the context of {self.row - 1} + 1 tokens "
                "(SFT never splits a document; raise --seq-len or drop the record)"
            )
        return ids, mask

    def _fill_row(self) -> tuple[list[int], list[bool]]:
        if not self.sft:
            while len(self.tokens) < self.row:
                ids, mask = self._next_document()
                self.tokens += ids
                self.mask += mask
            row = self.tokens[: self.row], self.mask[: self.row]
            self.tokens, self.mask = self.tokens[self.row :], self.mask[self.row :]
            return row
        tokens, mask = self.tokens, self.mask  # the document that did not fit the previous row
        self.tokens, self.mask = [], []
        while True:
            ids, doc_mask = self._next_document()
            if len(tokens) + len(ids) > self.row:
                self.tokens, self.mask = ids, doc_mask
                break
            tokens, mask = tokens + ids, mask + doc_mask
        pad = self.row - len(tokens)
        return tokens + [self.pad_id] * pad, mask + [False] * pad

    def next_rows(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self._fill_row() for _ in range(n)]
        return (
            torch.tensor([r[0] for r in rows], dtype=torch.long),
            torch.tensor([r[1] for r in rows], dtype=torch.bool),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "tokens": list(self.tokens), "mask": list(self.mask)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._documents = self.make_documents()
        for _ in itertools.islice(self._documents, state["consumed"]):
            pass
        self.consumed = state["consumed"]
        self.tokens, self.mask = list(state["tokens"]), list(state["mask"])


def fixed_rows(
    documents: Iterator[Document], tokenizer: Any, seq_len: int, sft: bool, pad_id: int, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` packed rows from a (held-out) stream: the same every time it is called on the same stream."""
    stream = iter(documents)
    packer = Packer(lambda: stream, tokenizer, seq_len, sft, pad_id)
    return packer.next_rows(rows)
