"""The training objective: next-token cross-entropy plus λ·MTP, as masked sums ready for any normalizer.

Design choices:
- Losses are returned as *sums* over trained tokens with their counts, not means: gradient
  accumulation and data parallelism then divide by the token count of the whole optimizer step (all
  micro-batches, all ranks), so a step's gradient does not depend on how its batch was split.
- MTP depth k's row i predicts token i + k + 1 through the shared output head (V3); its targets are
  `tokens[:, k + 1:]`, masked like the main loss. The MTP loss is the mean over depths, times λ.
- Cross-entropy is computed in fp32 from bf16 logits (autocast), the usual precision split.
- `correct` counts argmax hits: the eval reports next-token accuracy and the MTP head's accuracy on
  the token after next, the quantity that decides speculative-decoding acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tinyseek.model.transformer import Transformer


@dataclass
class MaskedSums:
    """Σ CE over trained targets, their number and the argmax hits, for one head."""

    loss: torch.Tensor
    count: torch.Tensor
    correct: torch.Tensor


@dataclass
class ForwardLosses:
    main: MaskedSums
    mtp: list[MaskedSums] = field(default_factory=list)


def _masked_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> MaskedSums:
    ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    weights = mask.flatten().to(ce.dtype)
    with torch.no_grad():
        correct = ((logits.argmax(dim=-1) == targets) & mask).sum()
    return MaskedSums((ce * weights).sum(), mask.sum(), correct)


def forward_losses(model: Transformer, tokens: torch.Tensor, mask: torch.Tensor, mtp: bool) -> ForwardLosses:
    """Losses of rows `tokens [B, T+1]` (inputs are the first T, targets the last T) and mask [B, T+1]."""
    inputs = tokens[:, :-1]
    hidden = model.hidden_states(inputs)
    out = ForwardLosses(_masked_ce(model.lm_head(hidden), tokens[:, 1:], mask[:, 1:]))
    if mtp:
        for k, states in enumerate(model.mtp_hidden_states(hidden, inputs), start=1):
            out.mtp.append(_masked_ce(model.lm_head(states), tokens[:, k + 1 :], mask[:, k + 1 :]))
    return out
