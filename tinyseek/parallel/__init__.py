"""Distributed training on PyTorch's own engine: DeviceMesh, FSDP2, expert parallelism.

Applied after the model is built; tinyseek/model/ knows nothing of it (torchtitan style).

What a trainer does (launched with `torchrun --nproc-per-node=N`):

    device = init_distributed()                        # NCCL on CUDA, gloo on CPU, from torchrun's env
    dims = ParallelDims(world_size=dist.get_world_size(), ep=args.ep)
    mesh = build_mesh(dims, device.type)
    torch.manual_seed(seed)                            # the SAME init on every rank: shards are cut locally
    model = Transformer(config).to(device)
    parallelize(model, mesh, param_dtype=torch.bfloat16 if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), ...)   # after parallelize: params are DTensors
    step = load_sharded(run_dir / "checkpoints", model, optimizer)  # tinyseek.checkpoint.run; 0 if none

    dp = mesh[DP_SHARD]                                # the data dimension
    # each rank reads its own 1/dp.size() of the global batch: rows dp.get_local_rank()::dp.size()
    loss = cross_entropy(model(local_ids)...)          # mean over the LOCAL tokens (equal counts per rank)
    loss.backward(); clip_grad_norm_(model.parameters(), 1.0); optimizer.step(); optimizer.zero_grad()
    log_loss = mean_over_ranks(loss, mesh)             # the global-batch loss, for logging
    save_sharded(run_dir / "checkpoints", step, model, optimizer)      # every rank calls it

- Gradients: FSDP averages over dp_shard, so with equal token counts per rank the update equals one
  process's on the whole batch (tests/dist checks it to 1e-5). With unequal counts, scale each rank's
  loss by local_tokens * world / global_tokens first.
- Aux-loss-free bias balancing: `MoE.tokens_per_expert` holds this rank's counts; all-reduce (SUM) it over
  mesh[DP_SHARD] before updating `e_score_correction_bias`, so every rank applies the same update.
- Clip gradients with `tinyseek.parallel.clip_grad_norm_(model.parameters(), max_norm)`, not torch's:
  with EP the gradients live on two meshes, which torch.nn.utils.clip_grad_norm_ rejects.
- Gradient accumulation: call backward per micro-batch (FSDP2 accumulates the sharded gradients); to
  skip the reduce-scatter on all but the last, `model.set_requires_gradient_sync(is_last_microbatch)`.
- Every rank builds the full model before `parallelize` (each keeps its shards, no broadcast), so the
  seed must match and the model must fit one rank's host memory; meta-device init is not done yet.
- Checkpoints: tinyseek.checkpoint.run's `save_sharded` / `load_sharded` (one DCP directory per step,
  `latest` pointer, loadable in one process, convertible to the HF layout with `tinyseek checkpoint
  convert`).
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh

from tinyseek.model.transformer import Transformer
from tinyseek.parallel.expert_parallel import ExpertParallelExperts, apply_expert_parallel
from tinyseek.parallel.fsdp import apply_fsdp
from tinyseek.parallel.grad_norm import clip_grad_norm_
from tinyseek.parallel.mesh import (
    DP_SHARD,
    DP_SHARD_MOD_EP,
    EP,
    ParallelDims,
    build_mesh,
    init_distributed,
    mean_over_ranks,
)

__all__ = [
    "DP_SHARD",
    "DP_SHARD_MOD_EP",
    "EP",
    "ExpertParallelExperts",
    "ParallelDims",
    "build_mesh",
    "clip_grad_norm_",
    "init_distributed",
    "mean_over_ranks",
    "parallelize",
]


def parallelize(
    model: Transformer,
    mesh: DeviceMesh,
    param_dtype: torch.dtype | None = None,
) -> Transformer:
    """Apply expert parallelism (when the mesh has an `ep` dimension), then FSDP2, in place; returns the model.

    The order is fixed: EP first swaps the routed experts for this rank's slice, so FSDP then shards
    what each rank actually holds. `param_dtype=torch.bfloat16` computes in bf16 with fp32 gradient
    reduction; None keeps fp32."""
    names = mesh.mesh_dim_names or ()
    ep = mesh[EP].size() if EP in names else 1
    ParallelDims(world_size=mesh.size(), ep=ep).check_experts(model.config.n_routed_experts)
    expert_mesh = None
    if ep > 1:
        apply_expert_parallel(model, mesh[EP])
        expert_mesh = mesh[DP_SHARD_MOD_EP]
    return apply_fsdp(model, mesh[DP_SHARD], expert_mesh, param_dtype)
