"""FSDP2 (`torch.distributed.fsdp.fully_shard`): every block is one unit, the root holds the rest.

Design choices:
- One FSDP unit per decoder block (main and MTP), one for the output head, then the root (embedding,
  final norm, MTP norms and projections): a block's parameters are all-gathered just before it runs
  and freed after, so peak memory is one block's full weights plus the shards. The head and the root
  keep their parameters from forward to backward (needed again at once).
- The head is its own unit because a trainer calls `model.lm_head` outside any root method, once for
  the next token and once per MTP depth; as part of the root it would be resharded by the root's first
  post-backward while the other call's backward still needs it. With tied embeddings the embedding
  joins the head's unit (one weight cannot live in two units).
- Expert-parallel experts are their own unit on the `dp_shard_mod_ep` mesh (ranks holding replicas of
  the same experts), nested inside their block's unit on `dp_shard`. Their gradient divide factor is
  the full dp_shard size: the EP all-to-all backward has already summed the contributions of the ep
  ranks of each group, so dividing by dp_shard gives mean_over_ranks(d local_loss / dw) — the same
  gradient as the non-expert parameters, and the same as one process on the whole batch.
- Mixed precision is a policy: bf16 parameters for compute with fp32 gradient reduction (GPUs);
  `param_dtype=None` keeps everything fp32 (CPU tests, exact parity).
- `hidden_states` and `mtp_hidden_states` are registered as FSDP forward methods, so the root's
  parameters are gathered for them too, not only for `forward`.
- On gloo the reductions are forced to plain sums followed by a division (gloo has no AVG or
  PREMUL_SUM), except on 1-rank meshes, where torch 2.13 would then apply the divide factor twice.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from tinyseek.model.moe import MoE
from tinyseek.model.transformer import MTPModule, Transformer
from tinyseek.parallel.expert_parallel import ExpertParallelExperts


def _units(model: Transformer) -> list[nn.Module]:
    """The decoder blocks, MTP blocks included. An MTP module's norms and projection stay with the root:
    `mtp_hidden_states` calls `shared_head_norm` outside the module's forward."""
    return [*model.layers, *(m.block for m in model.mtp if isinstance(m, MTPModule))]


def apply_fsdp(
    model: Transformer,
    dp_mesh: DeviceMesh,
    expert_mesh: DeviceMesh | None = None,
    param_dtype: torch.dtype | None = None,
) -> Transformer:
    """Shard `model` in place over `dp_mesh`; EP experts over `expert_mesh` (dp_shard_mod_ep)."""
    policy = (
        MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        if param_dtype is not None
        else MixedPrecisionPolicy()
    )
    units: list[tuple[FSDPModule, DeviceMesh]] = []
    for block in _units(model):
        for module in block.modules():
            if isinstance(module, MoE) and isinstance(module.experts, ExpertParallelExperts):
                if expert_mesh is None:
                    raise ValueError(
                        "the model has expert-parallel experts: pass expert_mesh (dp_shard_mod_ep)"
                    )
                experts = fully_shard(module.experts, mesh=expert_mesh, mp_policy=policy)
                experts.set_gradient_divide_factor(float(dp_mesh.size()))
                units.append((experts, expert_mesh))
        units.append((fully_shard(block, mesh=dp_mesh, mp_policy=policy), dp_mesh))
    # The head's own unit (see the module docstring); tied embeddings join it.
    tied = model.lm_head.weight is model.embed_tokens.weight
    head_modules: list[nn.Module] = [model.embed_tokens, model.lm_head] if tied else [model.lm_head]
    fully_shard(head_modules, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=False)
    units.append((cast(FSDPModule, model.lm_head), dp_mesh))
    root = fully_shard(model, mesh=dp_mesh, mp_policy=policy, reshard_after_forward=False)
    units.append((root, dp_mesh))
    for unit, mesh in units:
        # gloo has no AVG/PREMUL_SUM. Not on a 1-rank mesh: torch then divides by the factor twice.
        if mesh.device_type == "cpu" and mesh.size() > 1:
            unit.set_force_sum_reduction_for_comms(True)
    # The trainer calls these directly (hidden states for the head and MTP), not only forward().
    register_fsdp_forward_method(model, "hidden_states")
    register_fsdp_forward_method(model, "mtp_hidden_states")
    return model
