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
"""

from __future__ import annotations

import torch

from tinyseek.config import ModelConfig


class LayerSlots:
    """One layer's view of the pool, implementing the model's LatentStore protocol."""

    def __init__(self, cache: LatentCache, index: int):
        self.cache = cache
        self.latents = cache.latents[index]
        self.kv = cache.kv[index]
        self.pe = cache.pe[index]

    def update(
        self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor
    ) -> list[tuple[slice, torch.Tensor]]:
        cache = self.cache
        self.kv.index_copy_(0, cache.write_slots, kv.reshape(-1, kv.shape[-1]).to(self.kv.dtype))
        self.pe.index_copy_(0, cache.write_slots, pe.reshape(-1, pe.shape[-1]).to(self.pe.dtype))
        pool = self.latents.view(cache.num_blocks, cache.block_size, -1)
        return [
            (rows, pool.index_select(0, blocks.reshape(-1)).view(blocks.shape[0], -1, pool.shape[-1]))
            for rows, blocks in cache.read_blocks
        ]


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

    @staticmethod
    def bytes_per_token_for(config: ModelConfig, dtype: torch.dtype, n_layers: int) -> int:
        return config.latent_dim * n_layers * torch.empty((), dtype=dtype).element_size()

    def bind(self, write_slots: torch.Tensor, read_blocks: list[tuple[slice, torch.Tensor]]) -> None:
        """Set where the next forward writes ([B*T] slots) and reads: per group of consecutive rows,
        their blocks in position order ([b, nb])."""
        self.write_slots = write_slots
        self.read_blocks = read_blocks

    def layer(self, index: int) -> LayerSlots:
        return self.layers[index]

    @property
    def nbytes(self) -> int:
        return self.latents.nbytes

    @property
    def bytes_per_token(self) -> int:
        """Allocated bytes per token slot: (kv_lora_rank + qk_rope_head_dim) x layers x dtype size."""
        return self.nbytes // (self.num_blocks * self.block_size)
