"""Engine(compile=True): the decode forward under torch.compile gives the eager engine's tokens, and
the cache ops it compiles around (tinyseek/inference/latent_cache.py) equal the eager write and read."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference.latent_cache import LatentCache
from tinyseek.model.attention import attend_cached, latent_attention


def prompts_of(lengths: list[int], seed: int = 1, vocab: int = 64) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def test_cache_ops_equal_the_eager_write_gather_and_attention():
    """Both ops write the same pool and return what LayerSlots.update + latent_attention return, for
    one group (write_gather) and ragged groups (write_attend)."""
    config = random_model().config
    rank, width, heads = config.kv_lora_rank, config.latent_dim, 3
    gen = torch.Generator().manual_seed(0)
    for groups in ([(slice(0, 3), 3)], [(slice(0, 1), 3), (slice(1, 3), 1)]):
        caches = [LatentCache(config, num_blocks=12, n_layers=2) for _ in range(2)]
        for cache in caches:  # the same contents: a cached value read back, never the zeros
            cache.latents.copy_(torch.randn(cache.latents.shape, generator=gen.manual_seed(1)))
        table = torch.tensor([[1, 4, 7], [2, 5, 8], [3, 6, 9]])
        positions = torch.tensor([[40], [9], [5]])
        slots = table[torch.arange(3), positions[:, 0] // 16] * 16 + positions[:, 0] % 16
        kv, pe = torch.randn(3, 1, rank, generator=gen), torch.randn(3, 1, width - rank, generator=gen)
        q = torch.randn(3, heads, width, generator=gen)
        eager, ops = caches
        eager.bind(slots, [(g, table[g, :w]) for g, w in groups])
        ops.bind(slots, [])
        ops.bind_tables(table, groups)
        expected = latent_attention(eager.layer(1), q, kv, pe, positions, 0.3)
        new = torch.cat([kv, pe], dim=-1)
        args = (ops.latents, 1, ops.write_slots, new, ops.reads, ops.block_size)
        if len(groups) == 1:
            gathered = torch.ops.tinyseek.write_gather(*args)
            assert torch.equal(gathered, eager.layer(1).update(kv, pe, positions)[0][1])
            got = attend_cached(q, gathered, positions, 0.3, rank)
        else:
            got = torch.ops.tinyseek.write_attend(*args, q, positions, 0.3, rank)
        assert torch.equal(got, expected)
        assert torch.equal(ops.latents, eager.latents)


@pytest.mark.slow
def test_compiled_engine_decodes_the_eager_engines_tokens():
    """Batch 1, a batch of equal lengths (one attention group), a batch whose contexts differ tenfold
    (ragged groups), and 40 requests through 12 rows and a small cache (the batch changes size every
    few steps, requests wait for blocks): every token equals the eager engine's."""
    model = random_model()
    options = dict(max_model_len=160, max_num_seqs=12, max_cache_tokens=640, max_num_batched_tokens=512)
    eager, compiled = LLM(model, **options), LLM(model, compile=True, **options)  # type: ignore[arg-type]
    greedy = SamplingParams(temperature=0, max_tokens=12)
    churn = [SamplingParams(temperature=0, max_tokens=4 + (i * 7) % 19) for i in range(40)]
    for prompts, params in (
        (prompts_of([7]), greedy),
        (prompts_of([9] * 4, seed=2), greedy),
        (prompts_of([3, 100, 4, 90, 2], seed=3), greedy),
        (prompts_of([1 + (i * 11) % 45 for i in range(40)], seed=4), churn),
    ):
        expected = [o.token_ids for o in eager.generate(prompts, params)]
        assert [o.token_ids for o in compiled.generate(prompts, params)] == expected
