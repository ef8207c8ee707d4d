"""LatentCache: every layer's MLA latents in one preallocated pool of token slots, paged in blocks.

The one latent cache of the project: the engine's, and the model tests' (a batch with its rows laid
out block after block is just one way to fill the block table). Training's two-pass GRPO forward
keeps its latents in autograd instead (`tinyseek.rl.packing.SharedPromptLatents`): nothing in place.

Design choices:
- Per layer the pool holds the normalized KV latent and the rotated rope key side by side, one row
  [kv_lora_rank + qk_rope_head_dim] per slot (`kv` and `pe` are views of its two parts): nothing per
  head, and one gather per layer fetches both. Slot s belongs to block s // block_size; blocks are
  owned and shared through `BlockManager` (prefix caching), so a shared prompt prefix is stored once.
- The model runner binds, once per forward, where each input token writes (`write_slots` [B*T]) and
  which blocks make up each row's context in position order (`read_blocks`: groups of consecutive
  rows, [b, nb] each). Every layer then writes its new latents and gathers whole blocks (16 contiguous
  rows per index: a gather of single slots was several times slower), and the model's absorbed
  attention sees, per group, a dense [b, nb * block_size, R + r] context whose index equals the
  position, the contract of `tinyseek.model.attention.LatentStore`; positions past a row's own are
  masked as the future. Groups are the ragged part: rows with short contexts do not pay for the
  longest one in the batch.
- Padded positions write into and read from block 0 (never handed out); the attention masks them by
  position. The pool starts zeroed and only ever holds finite values, so masked reads are harmless.
- The pool size IS the memory budget: it is allocated once and requests wait for blocks.
- Compiled decoding (`Engine(compile=True)` compiles the decode forward, see model_runner.py): the
  write and the gather are ops declared as mutating the whole pool, a graph input, so inductor calls
  them in place. Traced as Python, the `index_copy_` into a view of the pool became a copy of the
  whole pool per layer: the compiled step grew with the pool (tiny preset, batch 1: 1.6 ms with a
  small pool, 20 ms with 64 x 1024 slots, eager 2.5 ms). With the ops it takes 1.4-1.5 ms with 272
  slots and with 65,552 (eager 2.7-2.8), the mini preset 5-6 ms with either (eager 8.4-8.6). With
  one read group (the usual decode batch: contexts within a tenth of each other) `write_gather`
  returns the gathered context and the attention is traced around it (scale, mask and softmax
  fuse); ragged groups, whose number changes from step to step, go through `write_attend`, which
  attends too, so the graph never depends on the grouping (one more graph, not one per grouping).
  Putting the attention in the op at every step was slower (tiny, batch 256: 13.7 against 12.9 ms a
  step; mini, batch 1: 6.8 against 6.4). Leaving write + gather + attention eager behind
  `torch.compiler.disable` instead of an op costs a graph break per layer, each resuming graph with
  its guards: the decode forward took 8.7 ms at mini batch 1 (eager 8.5, with the ops 4.2-4.6) and
  12.9 ms at tiny batch 256 (eager 13.7, with the ops 9.5). The reads travel packed in one tensor
  (`bind_tables`). On the CPU both give way to `write_attend_paged` where its C++ kernel builds
  (cpu_kernels.py): it attends over the pool in place, so nothing is gathered at all. A prefill from
  position 0 (`starts_empty`) only writes, through `write_latents`: the model attends expanded.
"""

from __future__ import annotations

import torch

from tinyseek.config import ModelConfig
from tinyseek.model.attention import attend_cached, latent_attention


class LayerSlots:
    """One layer's view of the pool, implementing the model's LatentStore protocol."""

    def __init__(self, cache: LatentCache, index: int):
        self.cache = cache
        self.index = index
        self.latents = cache.latents[index]
        self.kv = cache.kv[index]
        self.pe = cache.pe[index]

    @property
    def starts_empty(self) -> bool:
        return self.cache.starts_empty

    def write(self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor) -> None:
        """Store only (a prefill from position 0 attends over its own latents, expanded)."""
        cache = self.cache
        if torch.compiler.is_compiling():  # one op that writes the pool in place (module docstring)
            new = torch.cat([kv, pe], dim=-1).to(cache.latents.dtype)
            torch.ops.tinyseek.write_latents(cache.latents, self.index, cache.write_slots, new)
            return
        self.kv.index_copy_(0, cache.write_slots, kv.reshape(-1, kv.shape[-1]).to(self.kv.dtype))
        self.pe.index_copy_(0, cache.write_slots, pe.reshape(-1, pe.shape[-1]).to(self.pe.dtype))

    def update(
        self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor
    ) -> list[tuple[slice, torch.Tensor]]:
        cache = self.cache
        self.write(kv, pe, positions)
        pool = self.latents.view(cache.num_blocks, cache.block_size, -1)
        return [
            (rows, pool.index_select(0, blocks.reshape(-1)).view(blocks.shape[0], -1, pool.shape[-1]))
            for rows, blocks in cache.read_blocks
        ]

    def attend(
        self,
        q: torch.Tensor,
        kv: torch.Tensor,
        pe: torch.Tensor,
        positions: torch.Tensor,
        softmax_scale: float,
    ) -> torch.Tensor:
        """Write, gather and attend (`tinyseek.model.attention.latent_attention`). Under torch.compile
        the write and gather are one op that writes the pool in place, and with ragged groups the
        attention is in that op too (see the module docstring)."""
        if not torch.compiler.is_compiling():
            return latent_attention(self, q, kv, pe, positions, softmax_scale)
        cache = self.cache
        new = torch.cat([kv, pe], dim=-1).to(cache.latents.dtype)
        args = (cache.latents, self.index, cache.write_slots, new, cache.reads, cache.block_size)
        if cache.paged_kernel:  # the CPU kernel: no gathered copy, one graph for any grouping
            return torch.ops.tinyseek.write_attend_paged(*args, q, positions, softmax_scale, kv.shape[-1])
        if cache.uniform:
            latents = torch.ops.tinyseek.write_gather(*args)
            return attend_cached(q, latents, positions, softmax_scale, kv.shape[-1])
        return torch.ops.tinyseek.write_attend(*args, q, positions, softmax_scale, kv.shape[-1])


# The compiled decode forward's cache ops (module docstring). Registered through torch.library.Library
# rather than torch.library.custom_op: a step calls one per layer, and custom_op's Python wrappers
# (autograd and inplace-or-view handling) cost about 0.1 ms a call on this CPU, ~0.5 ms a step at mini.
_lib = torch.library.Library("tinyseek", "FRAGMENT")
_ARGS = "Tensor(a!) latents, int layer, Tensor write_slots, Tensor new, Tensor reads, int block_size"
_lib.define("write_latents(Tensor(a!) latents, int layer, Tensor write_slots, Tensor new) -> ()")
_lib.define(f"write_gather({_ARGS}) -> Tensor")
_ATTEND_ARGS = f"{_ARGS}, Tensor q, Tensor positions, float softmax_scale, int kv_lora_rank"
_lib.define(f"write_attend({_ATTEND_ARGS}) -> Tensor")
# The same step with the CPU C++ kernel (cpu_kernels.py builds it and registers its implementation).
_lib.define(f"write_attend_paged({_ATTEND_ARGS}) -> Tensor")


def _write_and_read(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor, reads: torch.Tensor,
    block_size: int,
) -> list[tuple[slice, torch.Tensor]]:  # fmt: skip
    """Write `new` [B, T, R + r] into layer `layer` at `write_slots`; gather the groups of `reads`."""
    _write_latents(latents, layer, write_slots, new)
    blocks = latents[layer].view(-1, block_size, latents.shape[-1])
    end = 1 + 3 * int(reads[0])
    groups = reads[1:end].view(-1, 3).tolist()
    table = reads[end:].view(new.shape[0], -1)
    return [
        (slice(start, stop), blocks.index_select(0, table[start:stop, :width].reshape(-1)))
        for start, stop, width in groups
    ]


@torch.library.impl(_lib, "write_latents", "CompositeExplicitAutograd")
def _write_latents(latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor) -> None:
    latents[layer].index_copy_(0, write_slots, new.reshape(-1, new.shape[-1]))


@torch.library.register_fake("tinyseek::write_latents")
def _write_latents_fake(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor
) -> None:
    return None


@torch.library.impl(_lib, "write_gather", "CompositeExplicitAutograd")
def _write_gather(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor, reads: torch.Tensor,
    block_size: int,
) -> torch.Tensor:  # fmt: skip
    """One group: its latents [B, nb * block_size, R + r] (the attention is traced around it)."""
    ((_, gathered),) = _write_and_read(latents, layer, write_slots, new, reads, block_size)
    return gathered.view(new.shape[0], -1, latents.shape[-1])


@torch.library.impl(_lib, "write_attend", "CompositeExplicitAutograd")
def _write_attend(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor, reads: torch.Tensor,
    block_size: int, q: torch.Tensor, positions: torch.Tensor, softmax_scale: float, kv_lora_rank: int,
) -> torch.Tensor:  # fmt: skip
    """Ragged groups: write, gather and attend, [B, T*H, R] (how many groups varies from step to step)."""
    groups = _write_and_read(latents, layer, write_slots, new, reads, block_size)
    width = latents.shape[-1]
    cached = [(rows, g.view(rows.stop - rows.start, -1, width)) for rows, g in groups]
    return attend_cached(q, cached, positions, softmax_scale, kv_lora_rank)


@torch.library.register_fake("tinyseek::write_gather")
def _write_gather_fake(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor, reads: torch.Tensor,
    block_size: int,
) -> torch.Tensor:  # fmt: skip
    rows = new.shape[0]  # reads: a 4-number header (one group), then the rows' blocks
    return latents.new_empty(rows, (reads.shape[0] - 4) // rows * block_size, latents.shape[-1])


@torch.library.register_fake("tinyseek::write_attend_paged")
@torch.library.register_fake("tinyseek::write_attend")
def _write_attend_fake(
    latents: torch.Tensor, layer: int, write_slots: torch.Tensor, new: torch.Tensor, reads: torch.Tensor,
    block_size: int, q: torch.Tensor, positions: torch.Tensor, softmax_scale: float, kv_lora_rank: int,
) -> torch.Tensor:  # fmt: skip
    return q.new_empty(q.shape[0], q.shape[1], kv_lora_rank, dtype=latents.dtype)


class LatentCache:
    def __init__(
        self,
        config: ModelConfig,
        num_blocks: int,
        block_size: int = 16,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        n_layers: int | None = None,
    ):
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.n_layers = config.num_hidden_layers if n_layers is None else n_layers
        slots = num_blocks * block_size
        self.latents = torch.zeros(self.n_layers, slots, config.latent_dim, dtype=dtype, device=device)
        self.kv, self.pe = self.latents.split([config.kv_lora_rank, config.qk_rope_head_dim], dim=-1)
        self.layers = [LayerSlots(self, i) for i in range(self.n_layers)]
        self.write_slots = torch.zeros(0, dtype=torch.long, device=device)
        self.read_blocks: list[tuple[slice, torch.Tensor]] = []
        self.reads = torch.zeros(0, dtype=torch.long, device=device)  # `read_blocks` packed, see bind_tables
        self.uniform = True
        self.paged_kernel = False  # set by a compiled CPU engine whose CPU kernels loaded
        self.starts_empty = False  # bound per forward: every row starts at position 0 (expanded MLA)

    @staticmethod
    def bytes_per_token_for(config: ModelConfig, dtype: torch.dtype, n_layers: int) -> int:
        return config.latent_dim * n_layers * torch.empty((), dtype=dtype).element_size()

    def bind(self, write_slots: torch.Tensor, read_blocks: list[tuple[slice, torch.Tensor]]) -> None:
        """Set where the next forward writes ([B*T] slots) and reads: per group of consecutive rows,
        their blocks in position order ([b, nb])."""
        self.write_slots = write_slots
        self.read_blocks = read_blocks

    def bind_tables(self, read_table: torch.Tensor, groups: list[tuple[slice, int]]) -> None:
        """Bind the same reads as `bind`'s list, also packed in the one tensor the compiled op takes:
        [G, (start, stop, width) per group, read_table [B, nb] (each row's blocks, nb the widest
        group's) row-major]. One tensor whose size is never B's: two tensors of equal sizes would be
        guarded equal by torch.compile (duck sizing) and recompiled when they differ."""
        header = [len(groups), *(n for g, width in groups for n in (g.start, g.stop, width))]
        head = torch.tensor(header, dtype=read_table.dtype, device=read_table.device)
        self.reads = torch.cat([head, read_table.reshape(-1)])
        self.uniform = len(groups) == 1
        self.read_blocks = [(g, read_table[g, :width]) for g, width in groups]

    def layer(self, index: int) -> LayerSlots:
        return self.layers[index]

    @property
    def nbytes(self) -> int:
        return self.latents.nbytes

    @property
    def bytes_per_token(self) -> int:
        """Allocated bytes per token slot: (kv_lora_rank + qk_rope_head_dim) x layers x dtype size."""
        return self.nbytes // (self.num_blocks * self.block_size)
