"""The models of a GRPO run and where they live: the trained policy, the engine's copy, the reference.

Design choices:
- One process: one Transformer is both trained and sampled from (the engine notices the optimizer's
  in-place updates); the reference (β > 0) is a frozen copy of the initial policy.
- Under torchrun the trained policy is sharded with FSDP2 (+ expert parallelism with `ep` > 1) by
  tinyseek.parallel, applied after the model is built exactly as pretraining applies it; the model
  code knows nothing of it. The reference is sharded the same way: its forwards run in lockstep with
  the policy's micro-batches.
- Each rank also keeps a plain, full copy of the policy for its own inference engine: rollouts run on
  every rank independently (different lengths, no collective per decode step), which a sharded model
  could not do. After each optimizer step `sync_rollout` gathers the full weights from the shards
  and copies them into that copy in memory, no file round trip; the copy bumps every tensor's
  version, so the engine empties its prefix cache before its next step (tinyseek.inference.engine).
  The gather is FSDP's own `unshard()` of every unit (one all-gather per unit; EP experts then
  `full_tensor()` over the ep ranks), 3-4x faster than a `full_tensor()` per parameter (measured:
  32-40 ms against 108-138 ms for the tiny preset on 2 gloo ranks).
  Under FSDP's bf16 policy (GPUs) the gathered weights, hence the engine's, are bf16-rounded.
- The policy's units stay gathered from that refresh to the end of the next backward
  (`reshard_after_forward` and `reshard_after_backward` off): the update's forwards and backwards
  reuse the refresh's all-gather instead of gathering every block again for the prompt pass, the
  completion pass and both their backwards (five all-gathers per unit and step become one, the
  refresh's; the 2-rank training phase of bench/grpo_scaling.py). The price is a second full copy
  of the weights per rank between steps (the engine holds the first; gradients and optimizer state
  stay sharded). `sync_rollout` reshards first, so the gather always reads the optimizer's shards;
  a checkpoint save or load reshards too (FSDP's state-dict hooks), and the next forward gathers.
- Every rank loads the same weights before sharding (tinyseek.parallel's contract), so the shards and
  the engine copies agree from the start.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from tinyseek.model.transformer import Transformer
from tinyseek.train.parallel_run import ParallelRun


@dataclass
class PolicyModels:
    policy: Transformer  # trained: plain in one process, FSDP2 (+ EP) under torchrun
    rollout: Transformer  # the engine's: `policy` itself in one process, a full copy per rank otherwise
    reference: Transformer | None  # frozen, β > 0 only; sharded like the policy

    @property
    def shared(self) -> bool:
        """Whether the engine samples from the trained model itself (nothing to copy after a step)."""
        return self.rollout is self.policy


def build_models(
    weights: str | Path,
    run: ParallelRun,
    *,
    reference_weights: str | Path | None = None,
    bf16: bool = False,
) -> PolicyModels:
    """The policy from `weights` (fp32 master weights on the run's device), its engine copy and, when
    `reference_weights` is given, the frozen reference; sharded under torchrun."""
    device = run.device
    policy = Transformer.from_pretrained(weights, dtype=torch.float32, device=device)
    reference = None
    if reference_weights is not None:
        reference = Transformer.from_pretrained(reference_weights, dtype=torch.float32, device=device)
        reference.eval().requires_grad_(False)
    if not run.distributed:
        return PolicyModels(policy, policy, reference)
    rollout = copy.deepcopy(policy).eval()
    policy = run.parallelize(policy, bf16)
    if isinstance(policy, FSDPModule):  # gathered from one engine refresh to the next backward's end
        policy.set_reshard_after_forward(False)
        policy.set_reshard_after_backward(False)
    if reference is not None:
        reference = run.parallelize(reference, bf16)
    return PolicyModels(policy, rollout, reference)


@torch.no_grad()
def sync_rollout(models: PolicyModels) -> None:
    """Copy the trained policy's full weights into the engine's copy (collective under torchrun: every
    rank calls it after the same optimizer step). The units are left gathered for the next update."""
    if models.shared:
        return
    units = [m for m in models.policy.modules() if isinstance(m, FSDPModule)]
    for unit in units:  # drop the pre-step gathered weights: gather the optimizer's new shards
        unit.reshard()
    for unit in units:
        unit.unshard()
    target = dict(models.rollout.named_parameters())
    for name, param in models.policy.named_parameters():
        target[name].copy_(param.full_tensor() if isinstance(param, DTensor) else param)
    buffers = dict(models.rollout.named_buffers())  # not sharded: e.g. a loaded routing bias
    for name, buffer in models.policy.named_buffers():
        buffers[name].copy_(buffer)


def load_full_optimizer_state(
    models: PolicyModels, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """A one-process optimizer state (`optimizer.state_dict()` of the plain policy) into the sharded
    policy's optimizer (collective under torchrun)."""
    names = dict(enumerate(name for name, p in models.rollout.named_parameters() if p.requires_grad))
    named: dict[str, Any] = {
        "state": {names[index]: values for index, values in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[i] for i in group["params"]]} for group in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(models.policy, optimizer, named, options=StateDictOptions(full_state_dict=True))
