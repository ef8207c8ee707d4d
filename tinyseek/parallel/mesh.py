"""Process group and DeviceMesh: which ranks shard parameters (FSDP) and which hold which experts (EP).

Design choices:
- `init_distributed` joins the process group torchrun describes in the environment (RANK, WORLD_SIZE,
  LOCAL_RANK, MASTER_ADDR/PORT); the backend follows the device: NCCL for CUDA, gloo for CPU. The model
  code never sees any of it.
- Expert parallelism borrows its ranks from the data-parallel shard dimension, as torchtitan does: the
  world is laid out as a 2-D mesh `(dp_shard_mod_ep, ep)` and the two dimensions are flattened back
  into `dp_shard`, the dimension that shards the data and the non-expert parameters. Ranks in one `ep`
  group hold different experts; ranks in one `dp_shard_mod_ep` group hold replicas of the same experts
  (which FSDP then shards among themselves). Without EP the mesh is 1-D, `(dp_shard,)`.
- Degrees are checked before any collective runs, so a bad `--ep` fails at once with the bad value named
  rather than hanging in a mismatched collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

DP_SHARD = "dp_shard"
EP = "ep"
DP_SHARD_MOD_EP = "dp_shard_mod_ep"


@dataclass(frozen=True)
class ParallelDims:
    """Parallel degrees: FSDP over all `world_size` ranks (`dp_shard`), `ep` of them borrowed for experts."""

    world_size: int
    ep: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size={self.world_size}: expected >= 1")
        if self.ep < 1 or self.world_size % self.ep:
            raise ValueError(f"ep={self.ep}: expected a divisor of the world size {self.world_size}")

    @property
    def dp_shard(self) -> int:
        """Ranks that shard the data and the non-expert parameters: all of them."""
        return self.world_size

    def check_experts(self, n_routed_experts: int) -> None:
        """Each EP rank holds n_routed_experts / ep whole experts."""
        if self.ep > 1 and (n_routed_experts == 0 or n_routed_experts % self.ep):
            raise ValueError(
                f"ep={self.ep}: expected a divisor of n_routed_experts={n_routed_experts} "
                "(each expert-parallel rank holds the same number of whole experts)"
            )


def device_type_for_run() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def init_distributed(device_type: str | None = None) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and return this rank's device.

    Outside torchrun (no WORLD_SIZE in the environment) this raises: run the script with
    `torchrun --nproc-per-node=N` or don't parallelize."""
    if "WORLD_SIZE" not in os.environ:
        raise ValueError("WORLD_SIZE is not set: launch with `torchrun --nproc-per-node=N ...`")
    device_type = device_type or device_type_for_run()
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type={device_type!r}: expected 'cpu' or 'cuda'")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(device_type, local_rank) if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device_type == "cuda" else None)
    return device


def build_mesh(dims: ParallelDims, device_type: str) -> DeviceMesh:
    """The mesh `parallelize` reads: `mesh[DP_SHARD]` always; `mesh[EP]`, `mesh[DP_SHARD_MOD_EP]` with EP."""
    if dist.is_initialized() and dist.get_world_size() != dims.world_size:
        raise ValueError(f"world_size={dims.world_size}: the process group has {dist.get_world_size()} ranks")
    if dims.ep == 1:
        return init_device_mesh(device_type, (dims.dp_shard,), mesh_dim_names=(DP_SHARD,))
    mesh = init_device_mesh(
        device_type, (dims.dp_shard // dims.ep, dims.ep), mesh_dim_names=(DP_SHARD_MOD_EP, EP)
    )
    mesh[DP_SHARD_MOD_EP, EP]._flatten(DP_SHARD)
    return mesh


def mean_over_ranks(value: torch.Tensor, mesh: DeviceMesh) -> torch.Tensor:
    """Mean of a (detached) tensor over the data-parallel ranks, e.g. the loss for logging.

    SUM then divide: gloo has no AVG all-reduce."""
    out = value.detach().clone()
    group = mesh[DP_SHARD].get_group()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out / dist.get_world_size(group)
