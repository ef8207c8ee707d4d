"""Scheduler: which sequences run each step, and the cache blocks they hold.

Design choices:
- Continuous batching: sequences are admitted between steps, first come first served, while there is
  a free batch row, prefill token budget, and cache blocks. Each step prefills what was admitted (and
  continues chunked prefills) and decodes everything else that is running.
- The memory budget holds by reservation: a sequence is admitted only with every block it can ever
  need (prompt + max_tokens, capped at the context, + the speculative lookahead) in hand, so a running
  sequence never runs out of cache and nothing is ever preempted; the rest wait. Prefix-cache hits
  count against that need, so shared prompts admit more sequences.
- A prompt whose first uncached block is being computed by another sequence in the same step waits
  one step, then hits the cache: n samples of one prompt compute the prompt once.
- At least one prompt token is always computed (its logits start the generation), so a hit covers at
  most the full blocks of prompt[:-1].
- Prompt blocks are registered in the prefix cache as soon as they are computed; generated blocks
  when the sequence finishes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

from tinyseek.inference.prefix_cache import BlockPool, block_keys
from tinyseek.inference.request import Sequence


@dataclass
class PrefillChunk:
    seq: Sequence
    start: int  # first position computed this step
    length: int  # tokens computed this step

    @property
    def completes_prompt(self) -> bool:
        return self.start + self.length == self.seq.prompt_len


@dataclass
class ScheduledStep:
    prefill: list[PrefillChunk]
    decode: list[Sequence]


class Scheduler:
    def __init__(
        self,
        pool: BlockPool,
        max_num_seqs: int,
        max_model_len: int,
        max_num_batched_tokens: int,
        lookahead: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.pool, self.max_num_seqs, self.max_model_len = pool, max_num_seqs, max_model_len
        self.max_num_batched_tokens, self.lookahead = max_num_batched_tokens, lookahead
        self.block_size = pool.block_size
        self.max_blocks_per_seq = math.ceil((max_model_len + lookahead) / self.block_size)
        # Row r holds the blocks of the sequence admitted into row r (block 0 = padding sink).
        self.block_table = torch.zeros(max_num_seqs, self.max_blocks_per_seq, dtype=torch.long, device=device)
        self.free_rows = list(range(max_num_seqs - 1, -1, -1))
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    # ---- bookkeeping ---------------------------------------------------------------------------
    def blocks_needed(self, seq: Sequence) -> int:
        tokens = min(seq.prompt_len + seq.params.max_tokens, self.max_model_len) + self.lookahead
        return math.ceil(tokens / self.block_size)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take a sequence out (finished or aborted): register its full blocks, free blocks and row."""
        if seq in self.running:
            self.running.remove(seq)
            self.register_computed_blocks(seq)
            self.pool.release(seq.blocks)
            seq.blocks = []
            self.free_rows.append(seq.row)
            seq.row = -1
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def register_computed_blocks(self, seq: Sequence) -> None:
        if seq.cache_generation != self.pool.generation:
            return  # computed with weights that have since changed
        full = seq.num_computed // self.block_size
        done = len(seq.block_keys)
        if full > done:
            parent = seq.block_keys[-1] if seq.block_keys else None
            start = done * self.block_size
            keys = block_keys(seq.token_ids[start : full * self.block_size], self.block_size, parent)
            for block, key in zip(seq.blocks[done:full], keys, strict=True):
                self.pool.register(block, key)
            seq.block_keys.extend(keys)

    # ---- one step ------------------------------------------------------------------------------
    def schedule(self) -> ScheduledStep:
        decode = [s for s in self.running if not s.prefilling]
        prefill: list[PrefillChunk] = []
        computing: set[int] = set()
        budget = self.max_num_batched_tokens
        longest = 0

        def fits(length: int) -> bool:
            return (len(prefill) + 1) * max(longest, length) <= budget

        for seq in self.running:  # chunked prefills already admitted go first
            if seq.prefilling:
                length = seq.prompt_len - seq.num_computed
                if prefill and not fits(length):
                    break
                length = min(length, budget)
                prefill.append(PrefillChunk(seq, seq.num_computed, length))
                longest = max(longest, length)
                computing.update(block_keys(seq.token_ids[: seq.prompt_len], self.block_size))
        deferred: list[Sequence] = []
        while self.waiting and self.free_rows:
            seq = self.waiting[0]
            keys = block_keys(seq.token_ids[: seq.prompt_len], self.block_size)
            hits = self.pool.lookup(keys[: (seq.prompt_len - 1) // self.block_size])
            if len(hits) < len(keys) and keys[len(hits)] in computing:
                deferred.append(self.waiting.popleft())  # its prefix is being computed this step
                continue
            length = seq.prompt_len - len(hits) * self.block_size
            if prefill and not fits(length):
                break
            new_blocks = self.blocks_needed(seq) - len(hits)
            if new_blocks > self.pool.num_available() - self.pool.num_evictable_among(hits):
                break  # wait for memory; first come first served
            self.waiting.popleft()
            self._admit(seq, hits, new_blocks)
            length = min(length, budget)
            prefill.append(PrefillChunk(seq, seq.num_computed, length))
            longest = max(longest, length)
            computing.update(keys[len(hits) :])
        self.waiting.extendleft(reversed(deferred))
        return ScheduledStep(prefill, decode)

    def _admit(self, seq: Sequence, hits: list[int], new_blocks: int) -> None:
        self.pool.acquire(hits)
        seq.blocks = hits + self.pool.allocate(new_blocks)
        seq.row = self.free_rows.pop()
        self.block_table[seq.row].zero_()
        self.block_table[seq.row, : len(seq.blocks)] = torch.tensor(seq.blocks)
        seq.num_computed = seq.hit_tokens = len(hits) * self.block_size
        seq.block_keys = [self.pool.key_of[b] for b in hits]
        seq.cache_generation = self.pool.generation
        self.running.append(seq)
