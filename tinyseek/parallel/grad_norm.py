"""Gradient clipping over parameters that live on different meshes (FSDP on dp_shard, experts on ep).

torch.nn.utils.clip_grad_norm_ stacks every gradient's norm into one tensor, which DTensor refuses
when the gradients sit on different meshes ("All operands ... must have the same mesh") — exactly the
FSDP2 + EP case. Here the norm is taken per mesh (a DTensor reduction that is exact across that mesh's
shards), made a plain tensor with `full_tensor()`, and the per-mesh norms are combined: the p-norm of
the per-mesh p-norms is the p-norm of all the gradients. Works unchanged on a plain, unsharded model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.distributed.tensor import DTensor


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0
) -> torch.Tensor:
    """Scale gradients in place so their global `norm_type` norm is at most `max_norm`; return that norm
    (the same value on every rank, taken before clipping)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    by_mesh: dict[object, list[torch.Tensor]] = {}
    for grad in grads:
        by_mesh.setdefault(grad.device_mesh if isinstance(grad, DTensor) else None, []).append(grad)
    norms = []
    for group in by_mesh.values():
        norm = torch.nn.utils.get_total_norm(group, norm_type)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.nn.utils.get_total_norm([n.to(norms[0].device) for n in norms], norm_type)
    coef = max_norm / (total.item() + 1e-6)
    if coef < 1.0:
        for grad in grads:
            grad.mul_(coef)
    return total
