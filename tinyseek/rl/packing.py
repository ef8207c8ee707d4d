"""From scored completions to padded micro-batches, and the policy's log-probs over their completions.

Design choices:
- A sequence is `prompt + completion`, right-padded: attention is causal, so padding after the last
  token changes nothing before it and no attention mask is needed.
- Only completion positions go through the output head: the hidden states at positions
  `prompt_len - 1 ... prompt_len + C - 2` are gathered into a `[B, C, H]` block first, so neither the
  head nor the fp32 log-softmax is computed over prompt tokens (R1-Zero's preamble alone is ~100 tokens).
- Samples are sorted by length before they are cut into micro-batches under a padded-token budget:
  similar lengths share a micro-batch, so little compute goes to padding.
- Log-probs, old log-probs and reference log-probs all live in the same `[B, C]` completion layout,
  which is what `tinyseek.rl.objective.grpo_loss` takes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from tinyseek.model.transformer import Transformer


@dataclass
class Sample:
    """One completion to train on: ids, its group-relative advantage, and whether it was cut short."""

    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class MicroBatch:
    input_ids: Tensor  # [B, L] prompt + completion, right-padded
    gather_index: Tensor  # [B, C] position whose hidden state predicts completion token c
    targets: Tensor  # [B, C] completion tokens (padding: any id)
    mask: Tensor  # [B, C] True on completion tokens
    advantages: Tensor  # [B]
    truncated: Tensor  # [B] bool
    ref_logprobs: Tensor | None = None
    old_logprobs: Tensor | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())


def _collate(samples: list[Sample], pad_id: int) -> MicroBatch:
    width = max(s.length for s in samples)
    completion = max(len(s.completion_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), completion), pad_id, dtype=torch.long)
    mask = torch.zeros(len(samples), completion, dtype=torch.bool)
    index = torch.zeros(len(samples), completion, dtype=torch.long)
    for row, s in enumerate(samples):
        sequence = s.prompt_ids + s.completion_ids
        ids[row, : len(sequence)] = torch.tensor(sequence)
        n = len(s.completion_ids)
        targets[row, :n] = torch.tensor(s.completion_ids)
        mask[row, :n] = True
        index[row] = (len(s.prompt_ids) - 1 + torch.arange(completion)).clamp(max=width - 1)
    return MicroBatch(
        input_ids=ids,
        gather_index=index,
        targets=targets,
        mask=mask,
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32),
        truncated=torch.tensor([s.truncated for s in samples], dtype=torch.bool),
    )


def pack(samples: list[Sample], max_tokens: int, pad_id: int = 0) -> list[MicroBatch]:
    """Sort by length and cut into micro-batches of at most `max_tokens` padded tokens (>= 1 sample each)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens per micro-batch must be >= 1, got {max_tokens}")
    batches: list[MicroBatch] = []
    current: list[Sample] = []
    for sample in sorted(samples, key=lambda s: s.length):
        if current and (len(current) + 1) * sample.length > max_tokens:
            batches.append(_collate(current, pad_id))
            current = []
        current.append(sample)
    if current:
        batches.append(_collate(current, pad_id))
    return batches


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 (or fp16) autocast around a forward when `dtype` is set; fp32 master weights either way."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def completion_logits(model: Transformer, batch: MicroBatch, amp_dtype: torch.dtype | None = None) -> Tensor:
    """Logits `[B, C, V]` at the completion positions only (see the module docstring)."""
    device = next(model.parameters()).device
    with autocast(amp_dtype, device):
        hidden = model.hidden_states(batch.input_ids.to(device))
        index = batch.gather_index.to(device).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        return model.lm_head(hidden.gather(1, index))
