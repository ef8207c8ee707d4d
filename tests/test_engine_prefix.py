"""Prefix-cache keys: a hash collision is a miss, never another prompt's latents."""

from __future__ import annotations

import torch

from tests.fixtures import greedy_reference, random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference import block_manager
from tinyseek.inference.block_manager import BlockManager, block_keys


def prompts(n: int, length: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (length,), generator=gen).tolist() for _ in range(n)]


def test_every_key_colliding_still_gives_exact_outputs(monkeypatch):
    """With a hash that maps every block to one key, a lookup finds another prompt's block under
    the prompt's key: the check of its tokens and parent turns it into a miss."""
    monkeypatch.setattr(block_manager, "chain_hash", lambda parent, tokens: 0)
    model = random_model()
    first, second = prompts(2, 40, seed=11)
    llm = LLM(model, max_model_len=128)
    params = SamplingParams(temperature=0, max_tokens=8)
    out_first = llm.generate([first], params)[0]
    out_second = llm.generate([second], params)[0]
    assert out_second.prompt_cache_hit_tokens == 0
    assert out_second.token_ids == greedy_reference(model, second, 8)
    again = llm.generate([first], params)[0]
    # Only the first prompt's first block could be keyed (every later block's key was taken); its
    # second block's key leads to that same first block, whose parent is not itself: a miss.
    assert again.prompt_cache_hit_tokens == 16
    assert again.token_ids == out_first.token_ids == greedy_reference(model, first, 8)


def test_a_reused_block_never_stands_in_for_an_evicted_parent():
    """Block ids come back after eviction; a child keyed under the old parent must not match."""
    manager = BlockManager(num_blocks=3, block_size=2)
    tokens = [1, 2, 3, 4]
    keys = block_keys(tokens, 2)
    blocks = manager.allocate(2)
    manager.register(blocks[0], keys[0], tokens[:2], None)
    manager.register(blocks[1], keys[1], tokens[2:], blocks[0])
    assert manager.lookup(keys, tokens) == blocks
    manager.release(blocks)
    # Evict the parent only (as an LRU that touched the child later would), then key its block anew
    # for the same first tokens: the old child's parent number no longer exists.
    manager.evictable.move_to_end(blocks[1])
    (reused,) = manager.allocate(1)
    assert reused == blocks[0] and keys[1] in manager.block_of
    manager.register(reused, keys[0], tokens[:2], None)
    assert manager.lookup(keys, tokens) == [reused]
