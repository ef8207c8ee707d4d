"""Expert parallelism: each EP rank holds E/ep routed experts; tokens travel to their experts and back.

Design choices:
- Applied by swapping each `MoE.experts` (tinyseek.model.moe.Experts) for `ExpertParallelExperts`, which
  keeps the same contract: `(rows sorted by expert, counts over all E experts) -> rows in the same order`.
  Gate, routing and the weighted combine in `MoE.forward` run unchanged on every rank's own tokens.
- Rank r holds experts [r·E/ep, (r+1)·E/ep). The weights stay under their usual names (`gate_up_proj`,
  `down_proj`) as DTensors `Shard(0)` on the `ep` mesh, so DCP saves and loads them with their global
  shape [E, ...] and a checkpoint written with any EP degree loads into an unsharded model.
- Dispatch: one `all_to_all_single` of the per-expert counts (so every rank knows how many rows it will
  receive), then the rows themselves with the autograd-aware functional `all_to_all_single_autograd`
  (works on gloo and NCCL; its backward is the reverse exchange of the gradients). Received rows arrive
  grouped by source rank then expert; they are permuted to expert-major for one grouped matmul and
  permuted back before the combine exchange. The split sizes are host integers, so each MoE layer
  syncs the host once per forward (as torchtitan's non-padded path does).
- Gradient scale: the gradient an expert receives on its EP rank is the sum over the ep ranks that sent
  it tokens of d(local loss)/dw. FSDP must divide expert gradients by the whole dp_shard size (not by its
  own dp_shard_mod_ep replica group) for FSDP + EP to give one process's update: see fsdp.py.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._functional_collectives import all_to_all_single_autograd
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard

from tinyseek.model.moe import Experts, MoE, swiglu_experts


class ExpertParallelExperts(nn.Module):
    """This rank's slice of the routed experts plus the all-to-all that feeds them."""

    def __init__(self, experts: Experts, ep_mesh: DeviceMesh):
        super().__init__()
        n_experts = experts.gate_up_proj.shape[0]
        self.ep_size, self.ep_rank = ep_mesh.size(), ep_mesh.get_local_rank()
        if n_experts % self.ep_size:
            raise ValueError(f"ep={self.ep_size}: expected a divisor of n_routed_experts={n_experts}")
        self.n_experts, self.n_local = n_experts, n_experts // self.ep_size
        self.ep_mesh = ep_mesh
        local = slice(self.ep_rank * self.n_local, (self.ep_rank + 1) * self.n_local)
        # Every rank built the same full model (same seed), so each keeps its own slice: no communication.
        self.gate_up_proj = nn.Parameter(self._shard(experts.gate_up_proj[local]))
        self.down_proj = nn.Parameter(self._shard(experts.down_proj[local]))

    def _shard(self, local: torch.Tensor) -> DTensor:
        return DTensor.from_local(local.detach().clone(), self.ep_mesh, [Shard(0)], run_check=False)

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        group = self.ep_mesh.get_group()
        p, n_local = self.ep_size, self.n_local
        # recv_counts[s, l]: rows source rank s sends to my local expert l.
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts.contiguous(), group=group)
        recv_counts = recv_counts.view(p, n_local)
        send_splits = counts.view(p, n_local).sum(1).tolist()
        recv_splits = recv_counts.sum(1).tolist()
        received = all_to_all_single_autograd(x.contiguous(), recv_splits, send_splits, group)

        # Rows arrive ordered (source, expert); the grouped matmul needs them ordered (expert, source).
        segment = torch.arange(p * n_local, device=x.device)
        expert_major = (segment % n_local) * p + segment // n_local
        row_key = expert_major.repeat_interleave(recv_counts.flatten())
        order = row_key.argsort(stable=True)
        gate_up = self._local(self.gate_up_proj)
        down = self._local(self.down_proj)
        out = swiglu_experts(received[order], gate_up, down, recv_counts.sum(0))
        out = out[order.argsort()]
        return all_to_all_single_autograd(out, send_splits, recv_splits, group)

    @staticmethod
    def _local(weight: torch.Tensor) -> torch.Tensor:
        return weight.to_local() if isinstance(weight, DTensor) else weight

    def extra_repr(self) -> str:
        first = self.ep_rank * self.n_local
        return f"experts [{first}, {first + self.n_local}) of {self.n_experts}, ep={self.ep_size}"


def apply_expert_parallel(model: nn.Module, ep_mesh: DeviceMesh) -> int:
    """Replace every MoE's routed experts by this rank's EP slice; returns how many MoE layers changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, MoE) and isinstance(module.experts, Experts):
            # Same call contract as Experts, a different class: MoE's annotation names the unsharded one.
            setattr(module, "experts", ExpertParallelExperts(module.experts, ep_mesh))  # noqa: B010
            changed += 1
    return changed
