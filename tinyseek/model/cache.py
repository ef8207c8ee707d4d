"""LatentCache: a preallocated MLA cache for one batch, row b of the input = row b of the cache.

Per layer it holds the normalized KV latent [B, S, kv_lora_rank] and the rotated shared rope key
[B, S, qk_rope_head_dim], at index = position, and nothing per head: that is MLA's whole saving.
The inference engine may keep latents elsewhere (paged blocks); anything with the same
`update(kv, pe, positions)` works with the model.
"""

from __future__ import annotations

import torch

from tinyseek.config import ModelConfig


class LayerLatents:
    def __init__(self, latents: torch.Tensor, kv_rank: int):
        self.latents = latents  # [B, S, R + r]
        self.kv, self.pe = latents[..., :kv_rank], latents[..., kv_rank:]

    def update(self, kv: torch.Tensor, pe: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(kv.shape[0], device=kv.device)[:, None].expand_as(positions)
        self.kv[rows, positions] = kv.to(self.kv.dtype)
        self.pe[rows, positions] = pe.to(self.pe.dtype)
        return self.latents[: kv.shape[0], : int(positions.max()) + 1]


class LatentCache:
    def __init__(
        self,
        config: ModelConfig,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        n_layers: int | None = None,
    ):
        if max_len > config.max_position_embeddings:
            raise ValueError(
                f"max_len={max_len}: expected <= max_position_embeddings={config.max_position_embeddings}"
            )
        n_layers = (
            config.num_hidden_layers + config.num_nextn_predict_layers if n_layers is None else n_layers
        )
        self.latents = torch.zeros(
            n_layers, batch_size, max_len, config.latent_dim, dtype=dtype, device=device
        )
        self.kv, self.pe = self.latents.split([config.kv_lora_rank, config.qk_rope_head_dim], dim=-1)
        self.layers = [LayerLatents(self.latents[i], config.kv_lora_rank) for i in range(n_layers)]

    def layer(self, index: int) -> LayerLatents:
        return self.layers[index]

    @property
    def nbytes(self) -> int:
        return self.latents.nbytes

    def bytes_per_token(self, n_layers: int | None = None) -> int:
        """Bytes per cached token across `n_layers` layers (default: all layers held)."""
        per_layer = (self.kv.shape[-1] + self.pe.shape[-1]) * self.kv.element_size()
        return per_layer * (self.kv.shape[0] if n_layers is None else n_layers)
