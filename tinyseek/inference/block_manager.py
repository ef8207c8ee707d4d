"""BlockManager: who owns which latent-cache block, and which blocks hold a known token prefix.

Design choices:
- The latent cache is cut into blocks of `block_size` tokens (16). A block full of computed latents
  gets a key from a hash chain, hash(parent block's key, this block's token ids), so one key names the
  whole prefix up to the end of the block, and a lookup walks a prompt block by block.
- A key is a fast 64-bit hash, and hashes collide: a collision must never hand one prompt the latents
  of another (vLLM keyed blocks the same way and replaced it after CVE-2025-25183). So a hit is
  verified: the block must hold exactly these token ids AND hang off the block matched one level up.
  Parents are compared by a registration number that is never reused (not by block id, which is
  reused after eviction, nor by key, which can collide too), so by induction a verified hit holds
  exactly the prompt's prefix, whatever the hash does.
- Blocks are reference counted. A finished request's keyed blocks are not wiped: at reference count 0
  they wait in an LRU list and are handed out again on a later hit, or evicted (key dropped) when fresh
  blocks run out. Unkeyed blocks go straight back to the free list.
- Block 0 is never handed out: it is the sink that padded positions write into and read from.
- `reset()` forgets every key (the weights changed, e.g. between RL steps: cached latents are stale)
  and bumps `generation`, so sequences admitted before it never register their blocks afterwards.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

NULL_BLOCK = 0


def chain_hash(parent: int | None, tokens: Sequence[int]) -> int:
    """Key of a block: its parent's key and its own token ids (fast, so it can collide)."""
    return hash((parent, tuple(tokens)))


def block_keys(token_ids: Sequence[int], block_size: int, parent: int | None = None) -> list[int]:
    """Hash-chain keys of every full block of `token_ids`, continuing from `parent`'s key."""
    keys: list[int] = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = chain_hash(parent, token_ids[start : start + block_size])
        keys.append(parent)
    return keys


@dataclass(frozen=True)
class CachedBlock:
    """What a keyed block holds: checked on every hit, so a hash collision is a miss."""

    key: int
    tokens: tuple[int, ...]
    parent: int  # `serial` of the block one level up; 0 for a prompt's first block
    serial: int  # this registration's number, never reused


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int = 16, enable_prefix_caching: bool = True):
        if num_blocks < 2:
            raise ValueError(f"num_blocks={num_blocks}: expected >= 2 (block 0 is the padding sink)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.free: deque[int] = deque(range(1, num_blocks))
        self.ref_count = [0] * num_blocks
        self.cached: dict[int, CachedBlock] = {}  # block -> what it holds
        self.block_of: dict[int, int] = {}  # key -> block
        self.evictable: OrderedDict[int, None] = OrderedDict()  # keyed blocks at ref 0, LRU first
        self.generation = 0
        self._serials = itertools.count(1)

    @property
    def capacity(self) -> int:
        """Blocks a request may ever use (all but the padding sink)."""
        return self.num_blocks - 1

    def num_available(self) -> int:
        return len(self.free) + len(self.evictable)

    def lookup(self, keys: Sequence[int], token_ids: Sequence[int]) -> list[int]:
        """Blocks holding the longest cached prefix of `token_ids` (whose block keys are `keys`)."""
        hits: list[int] = []
        if not self.enable_prefix_caching:
            return hits
        parent = 0
        for i, key in enumerate(keys):
            block = self.block_of.get(key)
            if block is None:
                break
            held = self.cached[block]
            tokens = tuple(token_ids[i * self.block_size : (i + 1) * self.block_size])
            if held.parent != parent or held.tokens != tokens:
                break  # a hash collision: another prefix owns this key
            hits.append(block)
            parent = held.serial
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
                del self.block_of[self.cached.pop(b).key]
            self.ref_count[b] = 1
            out.append(b)
        return out

    def register(self, block: int, key: int, tokens: Sequence[int], parent: int | None) -> bool:
        """Mark a full block as holding `tokens` after the prefix held by block `parent` (None for a
        prompt's first block). First writer wins; False when the block could not be keyed (its key is
        taken, or its parent is not keyed), and then its descendants are not keyed either."""
        if not self.enable_prefix_caching or key in self.block_of or block in self.cached:
            return False
        if parent is not None and parent not in self.cached:
            return False
        parent_serial = 0 if parent is None else self.cached[parent].serial
        self.cached[block] = CachedBlock(key, tuple(tokens), parent_serial, next(self._serials))
        self.block_of[key] = block
        return True

    def key_of(self, block: int) -> int:
        return self.cached[block].key

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference to each block; tail blocks first so that prefixes outlive their suffixes."""
        for b in reversed(blocks):
            self.ref_count[b] -= 1
            if self.ref_count[b] == 0:
                if b in self.cached:
                    self.evictable[b] = None
                else:
                    self.free.append(b)

    def reset(self) -> None:
        """Forget every cached prefix; blocks in use stay with their owners, unkeyed."""
        self.block_of.clear()
        self.cached.clear()
        self.free.extend(self.evictable)
        self.evictable.clear()
        self.generation += 1
