"""The trainer's view of its ranks: one process, or torchrun with FSDP2 (+ expert parallelism).

Design choices:
- Launching decides: under torchrun (WORLD_SIZE > 1) `ParallelRun.start` joins the process group,
  builds the mesh (`--ep` ranks borrowed from dp_shard for experts) and later parallelizes the model
  through tinyseek.parallel; otherwise it is a no-op object and the one-process path runs exactly as
  before (torch's clip_grad_norm_, no collectives). `torchrun --nproc-per-node=1` is one process too.
- The data dimension is `dp_shard`, which spans every rank (EP borrows its ranks, it does not split
  the data): a rank's rows, the loss and count sums and the expert loads are all taken over it.
- Every rank builds the same full model from the same seed before sharding (tinyseek.parallel's
  contract); a tokenizer trained on the corpus is trained on rank 0 only and sent to the others, so
  the vocabulary (hence the embedding shape) cannot differ between ranks.
- Decisions that end the loop (a signal, the time budget) are agreed by an all-reduce, because a rank
  that stops alone would leave the others waiting in a collective forever.
- bf16 compute under FSDP2 on GPUs is FSDP's mixed-precision policy (bf16 all-gathers, fp32 gradient
  reduction, fp32 master shards); on CPU (gloo) parameters stay fp32.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule

from tinyseek.model.transformer import Transformer
from tinyseek.tokenizer import Tokenizer


def launched_distributed() -> bool:
    """True under torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or no torchrun at all: the process that prints and writes run-level files."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class ParallelRun:
    """This process's place in the run: its device, its data-parallel rank and the mesh (None alone)."""

    device: torch.device
    mesh: DeviceMesh | None = None
    dp_mesh: DeviceMesh | None = None  # mesh[DP_SHARD], sliced once
    owns_group: bool = False

    @classmethod
    def start(cls, device: torch.device, ep: int) -> ParallelRun:
        """Join torchrun's process group and build the (dp_shard[, ep]) mesh; one process: no-op."""
        if not launched_distributed():
            if ep != 1:
                raise ValueError(
                    f"--ep {ep}: expert parallelism needs several processes; launch with "
                    f"`torchrun --nproc-per-node=N` where N is a multiple of {ep}"
                )
            return cls(device)
        from tinyseek.parallel import DP_SHARD, ParallelDims, build_mesh, init_distributed

        owns_group = not dist.is_initialized()
        device = init_distributed(device.type)
        try:
            dims = ParallelDims(world_size=dist.get_world_size(), ep=ep)
            mesh = build_mesh(dims, device.type)
        except BaseException:
            if owns_group:
                dist.destroy_process_group()
            raise
        return cls(device, mesh, mesh[DP_SHARD], owns_group)

    @property
    def distributed(self) -> bool:
        return self.mesh is not None

    @property
    def rank(self) -> int:
        """Rank in the data dimension (which rows of each global batch this process trains on)."""
        return self.dp_mesh.get_local_rank() if self.dp_mesh is not None else 0

    @property
    def world(self) -> int:
        """Data-parallel degree: how many slices each global batch is cut into."""
        return self.dp_mesh.size() if self.dp_mesh is not None else 1

    @property
    def is_main(self) -> bool:
        return not self.distributed or dist.get_rank() == 0

    @property
    def group(self) -> dist.ProcessGroup | None:
        """The data-parallel process group (None alone): what sums and loads are reduced over."""
        return self.dp_mesh.get_group() if self.dp_mesh is not None else None

    def parallelize(self, model: Transformer, bf16: bool) -> Transformer:
        """Expert parallelism then FSDP2 (tinyseek.parallel.parallelize); the model itself alone."""
        if self.mesh is None:
            return model
        from tinyseek.parallel import parallelize

        param_dtype = torch.bfloat16 if bf16 and self.device.type == "cuda" else None
        return parallelize(model, self.mesh, param_dtype=param_dtype)

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """SUM over the data-parallel ranks, in place (identity alone)."""
        if self.mesh is not None:
            dist.all_reduce(values, group=self.group)
        return values

    def agreed_stop(self, signal_name: str | None, out_of_time: bool) -> tuple[str | None, bool]:
        """Whether ANY rank got a signal or ran out of time: every rank then stops after the same step."""
        if self.mesh is None:
            return signal_name, out_of_time
        number = int(signal.Signals[signal_name]) if signal_name else 0
        flags = torch.tensor([number, int(out_of_time)], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group)
        number, late = (int(v) for v in flags.tolist())
        return (signal.Signals(number).name if number else None), bool(late)

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        """torch's clipping alone; tinyseek.parallel's under FSDP2+EP (gradients on two meshes)."""
        if self.mesh is None:
            return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        from tinyseek.parallel import clip_grad_norm_

        return clip_grad_norm_(parameters, max_norm)

    def sync_gradients(self, model: torch.nn.Module, sync: bool) -> None:
        """With gradient accumulation, reduce-scatter only after the last micro-batch's backward."""
        if isinstance(model, FSDPModule):
            model.set_requires_gradient_sync(sync)

    def tokenizer_from_rank0(self, build: Callable[[], Tokenizer]) -> Tokenizer:
        """`build()` on rank 0 only; the other ranks receive its tokenizer (same vocabulary everywhere)."""
        if self.mesh is None:
            return build()
        from tokenizers import Tokenizer as Backend

        box: list[object] = [None]
        if dist.get_rank() == 0:
            tokenizer = build()
            box = [(tokenizer.backend.to_str(), tokenizer.config)]
        dist.broadcast_object_list(box, src=0)
        if dist.get_rank() == 0:
            return tokenizer
        backend_json, config = cast(tuple[str, dict[str, Any]], box[0])
        return Tokenizer(Backend.from_str(backend_json), config)

    def barrier(self) -> None:
        if self.mesh is not None:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if this run joined it (a caller's own group is left alone)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
