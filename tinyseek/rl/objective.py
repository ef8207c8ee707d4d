"""The GRPO objective: group-relative advantages, per-token log-probs, clipped surrogate, k3 KL.

Design choices:
- Everything here is a pure tensor function, so each term can be checked against hand-computed values
  and reused by any loop (single process, FSDP, micro-batched).
- Advantages use the unbiased group std (`torch.std`, as TRL does) plus ε; with `scale=False` the std
  division is dropped (Dr. GRPO), leaving `r - mean(r)`.
- Log-probs are computed in fp32 with `gather - logsumexp`, over chunks of sequences whose fp32 copy
  stays under `FP32_CHUNK_ELEMENTS`: no `[B, T, V]` log-softmax is kept, a real vocabulary is handled a
  few sequences at a time, a tiny one in a single pass, and bf16 logits never round the ratio. Logits are
  divided by the sampling temperature first, so ratios compare the distributions that were sampled.
- The surrogate is `min(ρA, clip(ρ, 1 - ε_low, 1 + ε_high)A)` per token, minus `β·KL` with the k3
  estimator `π_ref/π_θ - log(π_ref/π_θ) - 1` (unbiased, always >= 0). With no old log-probs (μ = 1,
  on-policy) ρ = exp(logp - logp.detach()) = 1 and only its gradient matters.
- Aggregations (`loss_type`):
  `grpo`    mean over the tokens of each sequence, then mean over sequences;
  `dr_grpo` sum over all tokens / (number of sequences x max_new_tokens), a constant normaliser that
            removes the length bias of per-sequence means;
  `dapo`    sum over all tokens / number of tokens in the batch (token-level mean).
  A micro-batched loop passes the whole batch's `num_sequences` / `num_tokens` so that the gradients
  of its micro-batches add up to those of one big batch, and so that samples with zero advantage can
  be left out of the backward pass without changing the scale.
- `mask_truncated` zeroes the mask of completions cut by the length limit (DAPO's overlong filtering):
  they then add nothing to the loss; under `grpo`/`dr_grpo` they still count as sequences in the
  denominator (as in TRL), under `dapo` their tokens leave the token count.
- Metrics follow TRL's definitions: a token is "low-clipped" when ρ < 1 - ε_low with A < 0 and
  "high-clipped" when ρ > 1 + ε_high with A > 0 (the cases where the clip removes the gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tinyseek.rl.config import LOSS_TYPES, GRPOConfig

# Upper bound on the fp32 logits materialised at once by `token_logprobs` (2^25 floats = 128 MiB).
FP32_CHUNK_ELEMENTS = 2**25


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """`(r - mean_group(r)) / (std_group(r) + eps)` for rewards laid out group after group."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (groups laid end to end), got shape {tuple(rewards.shape)}")
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(
            f"group_size {group_size} must be >= 2 and divide the number of rewards ({rewards.numel()})"
        )
    grouped = rewards.float().view(-1, group_size)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centered = centered / (grouped.std(dim=1, keepdim=True) + eps)
    return centered.flatten()


def _row_chunks(logits: Tensor) -> list[slice]:
    """Row ranges whose fp32 copy stays under FP32_CHUNK_ELEMENTS (at least one row each)."""
    batch, length, vocab = logits.shape
    rows = max(1, FP32_CHUNK_ELEMENTS // max(length * vocab, 1))
    return [slice(start, start + rows) for start in range(0, batch, rows)]


def _check_logits(logits: Tensor, targets: Tensor, temperature: float) -> None:
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits [B, T, V] and targets [B, T], got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def token_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """fp32 `log softmax(logits / T)[targets]`, shape [B, T]; `logits[:, t]` predicts `targets[:, t]`."""
    _check_logits(logits, targets, temperature)
    parts = []
    for rows in _row_chunks(logits):
        scaled = logits[rows].float() / temperature
        picked = scaled.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
        parts.append(picked - torch.logsumexp(scaled, dim=-1))
    return torch.cat(parts)


@torch.no_grad()
def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy (nats) of `softmax(logits / T)` at every position, shape [B, T]; a metric, no gradient."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits [B, T, V], got {tuple(logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    parts = []
    for rows in _row_chunks(logits):
        scaled = logits[rows].float() / temperature
        log_z = torch.logsumexp(scaled, dim=-1)
        parts.append(log_z - (torch.softmax(scaled, dim=-1) * scaled).sum(-1))
    return torch.cat(parts)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π_θ || π_ref): `exp(d) - d - 1` with `d = logp_ref - logp_θ`."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def aggregate(
    token_losses: Tensor,
    mask: Tensor,
    loss_type: str,
    max_len: int,  # Dr. GRPO's constant: max_new_tokens
    num_sequences: int | None = None,
    num_tokens: int | None = None,
) -> Tensor:
    """Reduce per-token losses [B, T] to a scalar by `loss_type` (see the module docstring)."""
    # `where`, not a product: padding positions may hold inf/nan, and inf * 0 is nan.
    kept = torch.where(mask.bool(), token_losses, torch.zeros_like(token_losses))
    sequences = token_losses.shape[0] if num_sequences is None else num_sequences
    if loss_type == "grpo":
        per_sequence = kept.sum(-1) / mask.sum(-1).clamp(min=1)
        return per_sequence.sum() / max(sequences, 1)
    if loss_type == "dr_grpo":
        return kept.sum() / (max(sequences, 1) * max_len)
    if loss_type == "dapo":
        tokens = int(mask.sum().item()) if num_tokens is None else num_tokens
        return kept.sum() / max(tokens, 1)
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}")


@dataclass
class ObjectiveOutput:
    """The scalar loss to backpropagate and float metrics (means over unmasked tokens)."""

    loss: Tensor
    metrics: dict[str, float]


def grpo_loss(
    logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: GRPOConfig,
    old_logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
    truncated: Tensor | None = None,
    entropy: Tensor | None = None,
    num_sequences: int | None = None,
    num_tokens: int | None = None,
) -> ObjectiveOutput:
    """Clipped-surrogate GRPO loss (to minimise) for completions [B, T] with sequence advantages [B].

    `mask` marks completion tokens (1) against padding (0). `old_logprobs` are the sampling policy's
    (None when on-policy, μ = 1); `ref_logprobs` the frozen reference's (needed when β > 0, optional
    otherwise, used for the KL metric). `truncated` [B] flags completions cut by the length limit.
    """
    if logprobs.dim() != 2 or mask.shape != logprobs.shape:
        raise ValueError(
            f"expected logprobs and mask of the same shape [B, T], got {tuple(logprobs.shape)} and {tuple(mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"advantages must have shape [B] = [{logprobs.shape[0]}], got {tuple(advantages.shape)}"
        )
    for name, other in (("old_logprobs", old_logprobs), ("ref_logprobs", ref_logprobs), ("entropy", entropy)):
        if other is not None and other.shape != logprobs.shape:
            raise ValueError(f"{name} must have shape {tuple(logprobs.shape)}, got {tuple(other.shape)}")
    if config.beta > 0 and ref_logprobs is None:
        raise ValueError(f"beta = {config.beta} > 0 needs ref_logprobs (the frozen reference's log-probs)")
    mask = mask.bool()
    if config.mask_truncated:
        if truncated is None or truncated.shape != advantages.shape:
            raise ValueError("mask_truncated = True needs truncated, a bool tensor of shape [B]")
        mask = mask & ~truncated.bool().unsqueeze(-1)

    # Padding may hold any value (even inf); zero it before exp so neither the loss nor its gradient sees it.
    logprobs = _zero_padding(logprobs, mask)
    old = logprobs.detach() if old_logprobs is None else _zero_padding(old_logprobs, mask)
    ref = None if ref_logprobs is None else _zero_padding(ref_logprobs, mask)
    ratio = torch.exp(logprobs - old)
    adv = advantages.float().unsqueeze(-1)
    clipped = ratio.clamp(1 - config.epsilon_low, 1 + config.epsilon_high)
    token_losses = -torch.minimum(ratio * adv, clipped * adv)
    kl = None if ref is None else k3_kl(logprobs, ref)
    if kl is not None and config.beta > 0:
        token_losses = token_losses + config.beta * kl
    loss = aggregate(token_losses, mask, config.loss_type, config.max_new_tokens, num_sequences, num_tokens)

    with torch.no_grad():
        low = (ratio < 1 - config.epsilon_low) & (adv < 0)
        high = (ratio > 1 + config.epsilon_high) & (adv > 0)
        metrics = {
            "loss": loss.item(),
            "tokens": float(mask.sum().item()),
            "clip_low": _masked_mean(low.float(), mask),
            "clip_high": _masked_mean(high.float(), mask),
            "clip": _masked_mean((low | high).float(), mask),
            "ratio_mean": _masked_mean(ratio, mask),
            "ratio_min": ratio[mask].min().item() if mask.any() else 1.0,
            "ratio_max": ratio[mask].max().item() if mask.any() else 1.0,
        }
        if kl is not None:
            metrics["kl"] = _masked_mean(kl, mask)
        if entropy is not None:
            metrics["entropy"] = _masked_mean(entropy, mask)
    return ObjectiveOutput(loss=loss, metrics=metrics)


def _zero_padding(values: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, values, torch.zeros_like(values))


def _masked_mean(values: Tensor, mask: Tensor) -> float:
    """Mean over unmasked entries; 0.0 when none are (the `tokens` metric then says 0)."""
    return values[mask].float().mean().item() if mask.any() else 0.0
