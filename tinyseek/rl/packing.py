"""From scored completions to micro-batches, and the policy's log-probs over their completions.

The G completions of a group share their prompt, and an R1-Zero prompt (~100 tokens) is often longer
than the completions. Running `prompt + completion` G times would spend most of the training compute
on G identical copies of the prompt, so the forward is split in two:

1. the prompt pass runs each distinct prompt once and records every layer's MLA latents (the normalized
   kv latent and the rotated rope key: all that later tokens read of earlier ones);
2. the completion pass runs the completions at positions `P ... P + C - 1` through the absorbed MLA path
   over a `SharedPromptLatents` store that lays each row's prompt latents (index = position) before its
   own, so the position-based causal mask lets a completion token see its prompt and its own past.

Both passes keep the autograd graph, so the prompt's gradients collect the contributions of all G
completions: the same loss and gradients as G separate sequences (a test checks the log-probs against
plain full-sequence forwards), with `P + G·C` tokens computed instead of `G·(P + C)`.

Other choices:
- Completion token 0 is predicted by the prompt's last hidden state, tokens 1..C-1 by the completion
  pass; only these `[B, C]` positions go through the output head (no head or log-softmax over prompts).
- Samples are sorted by prompt length and cut into micro-batches under a token budget that counts each
  distinct prompt once (padded) plus every completion (padded): similar lengths share a micro-batch.
- Log-probs, old log-probs and reference log-probs all use the `[B, C]` completion layout that
  `tinyseek.rl.objective.grpo_loss` takes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tinyseek.model.transformer import Transformer


@dataclass
class Sample:
    """One completion to train on: ids, its group (prompt), advantage, and whether it was cut short."""

    group: int
    prompt_ids: list[int]
    completion_ids: list[int]
    advantage: float
    truncated: bool


@dataclass
class MicroBatch:
    prompt_ids: Tensor  # [G', P] distinct prompts, right-padded
    prompt_lengths: Tensor  # [G']
    row_prompt: Tensor  # [B] which prompt each completion row continues
    targets: Tensor  # [B, C] completion tokens, right-padded
    mask: Tensor  # [B, C] True on completion tokens
    advantages: Tensor  # [B]
    truncated: Tensor  # [B] bool
    ref_logprobs: Tensor | None = None
    old_logprobs: Tensor | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_tokens(self) -> int:
        """Tokens actually computed: each distinct prompt once, plus every completion (padding included)."""
        return int(self.prompt_ids.numel() + self.targets.numel())


def _cost(prompts: dict[int, int], rows: int, completion: int) -> int:
    return len(prompts) * max(prompts.values()) + rows * completion


def _collate(samples: list[Sample], pad_id: int) -> MicroBatch:
    groups: dict[int, int] = {}
    prompts: list[list[int]] = []
    for s in samples:
        if s.group not in groups:
            groups[s.group] = len(prompts)
            prompts.append(s.prompt_ids)
    width = max(len(p) for p in prompts)
    prompt_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, ids in enumerate(prompts):
        prompt_ids[row, : len(ids)] = torch.tensor(ids)
    completion = max(len(s.completion_ids) for s in samples)
    targets = torch.full((len(samples), completion), pad_id, dtype=torch.long)
    mask = torch.zeros(len(samples), completion, dtype=torch.bool)
    for row, s in enumerate(samples):
        targets[row, : len(s.completion_ids)] = torch.tensor(s.completion_ids)
        mask[row, : len(s.completion_ids)] = True
    return MicroBatch(
        prompt_ids=prompt_ids,
        prompt_lengths=torch.tensor([len(p) for p in prompts]),
        row_prompt=torch.tensor([groups[s.group] for s in samples]),
        targets=targets,
        mask=mask,
        advantages=torch.tensor([s.advantage for s in samples], dtype=torch.float32),
        truncated=torch.tensor([s.truncated for s in samples], dtype=torch.bool),
    )


def pack(samples: list[Sample], max_tokens: int, pad_id: int = 0) -> list[MicroBatch]:
    """Sort by prompt length, then cut into micro-batches of at most `max_tokens` computed tokens."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens per micro-batch must be >= 1, got {max_tokens}")
    if any(not s.prompt_ids or not s.completion_ids for s in samples):
        raise ValueError("every sample needs at least one prompt token and one completion token")
    ordered = sorted(samples, key=lambda s: (len(s.prompt_ids), s.group, len(s.completion_ids)))
    batches: list[MicroBatch] = []
    current: list[Sample] = []
    prompts: dict[int, int] = {}
    completion = 0
    for sample in ordered:
        grown = {**prompts, sample.group: len(sample.prompt_ids)}
        wider = max(completion, len(sample.completion_ids))
        if current and _cost(grown, len(current) + 1, wider) > max_tokens:
            batches.append(_collate(current, pad_id))
            current, prompts, completion = [], {}, 0
            grown, wider = {sample.group: len(sample.prompt_ids)}, len(sample.completion_ids)
        current.append(sample)
        prompts, completion = grown, wider
    if current:
        batches.append(_collate(current, pad_id))
    return batches


class SharedPromptLatents:
    """A latent store (`layer(i).update(kv, pe, positions)`) for the two-pass forward of the docstring.

    While recording, `update` keeps each layer's prompt latents and returns them (a causal pass over
    the prompts). Once `continue_rows` is set, `update` returns, per completion row, its prompt's
    latents at indices `< P` followed by the completion's own at `P ...`: index = position, as the
    absorbed MLA path expects. Unlike the inference cache nothing is stored in place, so autograd
    sees every step.
    """

    def __init__(self) -> None:
        self.prompt: dict[int, Tensor] = {}
        self.row_prompt: Tensor | None = None
        self.row_lengths: Tensor | None = None

    def layer(self, index: int) -> _LayerView:
        return _LayerView(self, index)

    def continue_rows(self, row_prompt: Tensor, prompt_lengths: Tensor) -> None:
        self.row_prompt = row_prompt
        self.row_lengths = prompt_lengths[row_prompt]

    def update(self, index: int, kv: Tensor, pe: Tensor, positions: Tensor) -> Tensor:
        latents = torch.cat([kv, pe], dim=-1)
        if self.row_prompt is None:
            self.prompt[index] = latents
            return latents
        return self._join(self.prompt[index], latents)

    def _join(self, prompt: Tensor, own: Tensor) -> Tensor:
        assert self.row_prompt is not None and self.row_lengths is not None
        rows, length, dim = own.shape
        span = prompt.shape[1] + length
        index = torch.arange(span, device=own.device)[None, :]
        lengths = self.row_lengths[:, None]
        before = F.pad(prompt[self.row_prompt], (0, 0, 0, length))
        offset = (index - lengths).clamp(0, length - 1)
        after = own.gather(1, offset.unsqueeze(-1).expand(-1, -1, dim))
        return torch.where((index < lengths).unsqueeze(-1), before, after)


@dataclass
class _LayerView:
    store: SharedPromptLatents
    index: int
    starts_empty = False  # the completion pass reads the prompt pass's latents: always the absorbed path

    def update(self, kv: Tensor, pe: Tensor, positions: Tensor) -> Tensor:
        return self.store.update(self.index, kv, pe, positions)


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """bf16 (or fp16) autocast around a forward when `dtype` is set; fp32 master weights either way."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def completion_logits(model: Transformer, batch: MicroBatch, amp_dtype: torch.dtype | None = None) -> Tensor:
    """Logits `[B, C, V]` predicting each completion token (see the module docstring)."""
    device = next(model.parameters()).device
    prompt_ids = batch.prompt_ids.to(device)
    prompt_lengths = batch.prompt_lengths.to(device)
    row_prompt = batch.row_prompt.to(device)
    targets = batch.targets.to(device)
    store = SharedPromptLatents()
    with autocast(amp_dtype, device):
        positions = torch.arange(prompt_ids.shape[1], device=device).expand_as(prompt_ids)
        prompt_hidden = model.hidden_states(prompt_ids, positions, store)
        last = prompt_hidden[torch.arange(len(prompt_ids), device=device), prompt_lengths - 1]
        store.continue_rows(row_prompt, prompt_lengths)
        positions = prompt_lengths[row_prompt][:, None] + torch.arange(targets.shape[1], device=device)
        completion_hidden = model.hidden_states(targets, positions, store)
        hidden = torch.cat([last[row_prompt].unsqueeze(1), completion_hidden[:, :-1]], dim=1)
        return model.lm_head(hidden)
