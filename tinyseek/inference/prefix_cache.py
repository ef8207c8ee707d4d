"""BlockPool: who owns which latent-cache block, and which blocks hold a known token prefix.

Design choices:
- The latent cache is cut into blocks of `block_size` tokens (16). A block that is full of computed
  latents is keyed by a hash chain: hash(parent block's key, this block's token ids), so one key names
  the whole prefix up to the end of the block, and a lookup walks a prompt block by block.
- Blocks are reference counted. A finished request's keyed blocks are not wiped: at reference count 0
  they wait in an LRU list and are handed out again on a later hit, or evicted (key dropped) when fresh
  blocks run out. Unkeyed blocks go straight back to the free list.
- Block 0 is never handed out: it is the sink that padded positions write into and read from.
- Keys use Python's hash of int tuples, which is deterministic across processes (no string hashing).
- `reset()` forgets every key (the weights changed, e.g. between RL steps: cached latents are stale)
  and bumps `generation`, so sequences admitted before it never register their blocks afterwards.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

NULL_BLOCK = 0


def block_keys(token_ids: Sequence[int], block_size: int, parent: int | None = None) -> list[int]:
    """Hash-chain keys of every full block of `token_ids`, continuing from `parent`'s key."""
    keys: list[int] = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[start : start + block_size])))
        keys.append(parent)
    return keys


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int = 16, enable_prefix_caching: bool = True):
        if num_blocks < 2:
            raise ValueError(f"num_blocks={num_blocks}: expected >= 2 (block 0 is the padding sink)")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.free: deque[int] = deque(range(1, num_blocks))
        self.ref_count = [0] * num_blocks
        self.key_of: dict[int, int] = {}  # block -> key
        self.block_of: dict[int, int] = {}  # key -> block
        self.evictable: OrderedDict[int, None] = OrderedDict()  # keyed blocks at ref 0, LRU first
        self.generation = 0

    @property
    def capacity(self) -> int:
        """Blocks a request may ever use (all but the padding sink)."""
        return self.num_blocks - 1

    def num_available(self) -> int:
        return len(self.free) + len(self.evictable)

    def lookup(self, keys: Sequence[int]) -> list[int]:
        """Blocks holding the longest cached prefix of `keys` (not yet acquired)."""
        hits: list[int] = []
        if self.enable_prefix_caching:
            for key in keys:
                block = self.block_of.get(key)
                if block is None:
                    break
                hits.append(block)
        return hits

    def num_evictable_among(self, blocks: Sequence[int]) -> int:
        return sum(1 for b in blocks if b in self.evictable)

    def acquire(self, blocks: Sequence[int]) -> None:
        for b in blocks:
            if self.ref_count[b] == 0:
                self.evictable.pop(b, None)
            self.ref_count[b] += 1

    def allocate(self, n: int) -> list[int]:
        if n > self.num_available():
            raise RuntimeError(f"asked for {n} blocks, {self.num_available()} available")
        out = []
        for _ in range(n):
            if self.free:
                b = self.free.popleft()
            else:
                b, _ = self.evictable.popitem(last=False)
                del self.block_of[self.key_of.pop(b)]
            self.ref_count[b] = 1
            out.append(b)
        return out

    def register(self, block: int, key: int) -> None:
        """Mark a full block as holding the prefix named `key` (first writer wins)."""
        if self.enable_prefix_caching and key not in self.block_of and block not in self.key_of:
            self.block_of[key] = block
            self.key_of[block] = key

    def is_cached(self, key: int) -> bool:
        return key in self.block_of

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference to each block; tail blocks first so that prefixes outlive their suffixes."""
        for b in reversed(blocks):
            self.ref_count[b] -= 1
            if self.ref_count[b] == 0:
                if b in self.key_of:
                    self.evictable[b] = None
                else:
                    self.free.append(b)

    def reset(self) -> None:
        """Forget every cached prefix; blocks in use stay with their owners, unkeyed."""
        self.block_of.clear()
        self.key_of.clear()
        self.free.extend(self.evictable)
        self.evictable.clear()
        self.generation += 1
