"""The run's corpus: which documents train, which are held out, and the tokenizer-training sample.

Design choices:
- Task documents come from the tasks' train split and their held-out rows from the test split (the
  two never overlap, see tinyseek.tasks.base.split_of); files hold out every HOLDOUT_EVERY-th record.
- Tasks and files together are interleaved one document each in turn.
- `train_documents` is a factory, not an iterator: the packer calls it again on resume and skips the
  documents already consumed, which is why every stream here is a pure function of the seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from tinyseek.train.config import TrainConfig
from tinyseek.train.documents import (
    Document,
    TaskSpec,
    file_documents,
    read_jsonl_documents,
    split_holdout,
    task_documents,
)
from tinyseek.train.packing import fixed_rows


def _interleave(streams: list[Iterator[Document]]) -> Iterator[Document]:
    for n in itertools.count():
        yield next(streams[n % len(streams)])


def _cycle(documents: list[Document]) -> Iterator[Document]:
    while True:
        yield from documents


@dataclass
class Corpus:
    spec: TaskSpec | None
    train_files: list[Document]
    held_files: list[Document]
    seed: int
    eval_row_count: int

    def train_documents(self) -> Iterator[Document]:
        streams = []
        if self.spec is not None:
            streams.append(task_documents(self.spec, self.seed, "train"))
        if self.train_files:
            streams.append(file_documents(self.train_files, self.seed))
        return _interleave(streams)

    def sample(self, n: int) -> list[Document]:
        """The first `n` training documents (what a tokenizer is trained on when none is given)."""
        return list(itertools.islice(self.train_documents(), n))

    def eval_rows(
        self, tokenizer: object, seq_len: int, sft: bool, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Fixed held-out rows, or None when the data has no held-out part."""
        if self.eval_row_count == 0:
            return None
        if self.spec is not None:
            stream = task_documents(self.spec, self.seed, "test")
        elif self.held_files:
            stream = _cycle(self.held_files)
        else:
            return None
        return fixed_rows(stream, tokenizer, seq_len, sft, pad_id, self.eval_row_count)


def build_corpus(config: TrainConfig, data_ranks: int = 1) -> Corpus:
    """The run's documents; `data_ranks` data-parallel ranks each evaluate `eval_batches` batches."""
    spec = None
    if config.tasks:
        same_names = (
            "doc_format",
            "difficulty",
            "error_rate",
            "self_check_rate",
            "direct_rate",
            "direct_from",
        )
        spec = TaskSpec(
            names=tuple(config.tasks),
            langs=tuple(config.langs),
            lang_weights=tuple(config.lang_weights),
            code_switch_rate=config.code_switch_rate,
            preamble_share=config.r1zero_preamble_share,
            **{name: getattr(config, name) for name in same_names},
        )
    train_files: list[Document] = []
    held_files: list[Document] = []
    for path in config.data:
        train, held = split_holdout(read_jsonl_documents(path))
        train_files += train
        held_files += held
    if spec is None and not train_files:
        raise ValueError("no training documents: expected --task NAMES or --data FILE.jsonl")
    return Corpus(
        spec,
        train_files,
        held_files,
        config.seed,
        config.eval_batches * (config.batch_size or 1) * data_ranks,
    )
