"""Scheduler: the life of every sequence in the engine, from admission to its finish.

An engine step is schedule → run → postprocess, and only the first and the last change anything:
- `schedule()` admits waiting sequences into batch rows with their cache blocks and says what runs;
- the ModelRunner computes the step and returns tokens (and drafts); it changes no sequence;
- `postprocess()` applies what came back: computed positions, prefix-cache keys, new tokens, the
  finish rules, and the freeing of finished sequences; it returns each sequence's `Delta`.

Design choices:
- Continuous batching: sequences are admitted between steps, first come first served, while there is
  a free batch row, prefill token budget, and cache blocks. Each step prefills what was admitted (and
  continues chunked prefills) and decodes everything else that is running.
- The memory budget holds by reservation: a sequence is admitted only with every block it can ever
  need (prompt + max_tokens, capped at the context, + the speculative lookahead) in hand, so a running
  sequence never runs out of cache and nothing is ever preempted; the rest wait. Prefix-cache hits
  count against that need, so shared prompts admit more sequences.
- The prefill budget counts tokens, not padded rows: the runner packs prefill chunks without padding.
- A prompt whose first uncached block is being computed by another sequence in the same step waits
  one step, then hits the cache: n samples of one prompt compute the prompt once.
- At least one prompt token is always computed (its logits start the generation), so a hit covers at
  most the full blocks of prompt[:-1].
- Prompt blocks are keyed in the prefix cache as soon as they are computed; generated blocks when the
  sequence finishes.
- Finish rules, in order per new token: EOS (unless ignore_eos) and stop_token_ids give "stop" with
  the token kept; a stop string gives "stop" with the text cut before it; max_tokens or the end of the
  context give "length". An aborted sequence ends with "abort" and frees its cache at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from tinyseek.inference.block_manager import BlockManager, block_keys
from tinyseek.inference.request import Delta, Sequence, StepTokens


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


@dataclass
class EngineStats:
    steps: int = 0
    prompt_tokens_computed: int = 0
    generated_tokens: int = 0
    prompt_cache_hit_tokens: int = 0
    prompt_cache_miss_tokens: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Share of MTP drafts that the main model accepted (0 when nothing was drafted)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else 0.0


class Scheduler:
    def __init__(
        self,
        block_manager: BlockManager,
        max_num_seqs: int,
        max_model_len: int,
        max_num_batched_tokens: int,
        eos_token_ids: Iterable[int],
        lookahead: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.block_manager = block_manager
        self.block_size = block_manager.block_size
        self.max_num_seqs = max_num_seqs
        self.max_model_len = max_model_len
        self.max_num_batched_tokens = max_num_batched_tokens
        self.eos_token_ids = set(eos_token_ids)
        self.lookahead = lookahead
        self.max_blocks_per_seq = math.ceil((max_model_len + lookahead) / self.block_size)
        # Row r holds the blocks of the sequence admitted into row r (block 0 = padding sink).
        self.block_table = torch.zeros(max_num_seqs, self.max_blocks_per_seq, dtype=torch.long, device=device)
        self.free_rows = list(range(max_num_seqs - 1, -1, -1))
        self.waiting: deque[Sequence] = deque()
        self.running: dict[Sequence, None] = {}  # insertion-ordered set: admission order
        self.stats = EngineStats()

    # ---- admission and removal -----------------------------------------------------------------
    def blocks_needed(self, seq: Sequence) -> int:
        tokens = min(seq.prompt_len + seq.params.max_tokens, self.max_model_len) + self.lookahead
        return math.ceil(tokens / self.block_size)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def abort(self, seq: Sequence) -> None:
        """End a sequence that has not finished: it frees its cache now."""
        if seq.finish_reason is None:
            seq.finish_reason = "abort"
            if seq in self.running:
                self._free(seq)
            else:
                self.waiting.remove(seq)

    def _admit(self, seq: Sequence, hits: list[int], new_blocks: int) -> None:
        manager = self.block_manager
        manager.acquire(hits)
        seq.blocks = hits + manager.allocate(new_blocks)
        seq.row = self.free_rows.pop()
        self.block_table[seq.row].zero_()
        self.block_table[seq.row, : len(seq.blocks)] = torch.tensor(seq.blocks)
        seq.num_computed = seq.hit_tokens = len(hits) * self.block_size
        seq.block_keys = [manager.key_of(b) for b in hits]
        seq.cache_generation = manager.generation
        self.running[seq] = None

    def _free(self, seq: Sequence) -> None:
        """Take a running sequence out: key its full blocks, release its blocks and its row."""
        del self.running[seq]
        self._key_computed_blocks(seq)
        self.block_manager.release(seq.blocks)
        seq.blocks = []
        self.free_rows.append(seq.row)
        seq.row = -1

    def _key_computed_blocks(self, seq: Sequence) -> None:
        manager = self.block_manager
        if seq.cache_generation != manager.generation:
            return  # computed with weights that have since changed
        full = seq.num_computed // self.block_size
        done = len(seq.block_keys)
        if full <= done:
            return
        parent_key = seq.block_keys[-1] if seq.block_keys else None
        start = done * self.block_size
        keys = block_keys(seq.token_ids[start : full * self.block_size], self.block_size, parent_key)
        for i, key in enumerate(keys, start=done):
            tokens = seq.token_ids[i * self.block_size : (i + 1) * self.block_size]
            manager.register(seq.blocks[i], key, tokens, seq.blocks[i - 1] if i else None)
        seq.block_keys.extend(keys)

    # ---- schedule ------------------------------------------------------------------------------
    def schedule(self) -> ScheduledStep:
        decode = [s for s in self.running if not s.prefilling]
        prefill: list[PrefillChunk] = []
        computing: set[int] = set()
        budget = self.max_num_batched_tokens
        for seq in self.running:  # chunked prefills already admitted go first
            if seq.prefilling and budget > 0:
                length = min(seq.prompt_len - seq.num_computed, budget)
                prefill.append(PrefillChunk(seq, seq.num_computed, length))
                budget -= length
                computing.update(block_keys(seq.token_ids[: seq.prompt_len], self.block_size))
        deferred: list[Sequence] = []
        manager = self.block_manager
        while self.waiting and self.free_rows and budget > 0:
            seq = self.waiting[0]
            keys = block_keys(seq.token_ids[: seq.prompt_len], self.block_size)
            hits = manager.lookup(keys[: (seq.prompt_len - 1) // self.block_size], seq.token_ids)
            if len(hits) < len(keys) and keys[len(hits)] in computing:
                deferred.append(self.waiting.popleft())  # its prefix is being computed this step
                continue
            new_blocks = self.blocks_needed(seq) - len(hits)
            if new_blocks > manager.num_available() - manager.num_evictable_among(hits):
                break  # wait for memory; first come first served
            self.waiting.popleft()
            self._admit(seq, hits, new_blocks)
            length = min(seq.prompt_len - seq.num_computed, budget)
            prefill.append(PrefillChunk(seq, seq.num_computed, length))
            budget -= length
            computing.update(keys[len(hits) :])
        self.waiting.extendleft(reversed(deferred))
        return ScheduledStep(prefill, decode)

    # ---- postprocess ---------------------------------------------------------------------------
    def postprocess(self, step: ScheduledStep, results: list[StepTokens | None]) -> list[Delta]:
        """Apply the runner's results (aligned with step.prefill, then step.decode); return the deltas."""
        deltas: list[Delta] = []
        prefilled, decoded = results[: len(step.prefill)], results[len(step.prefill) :]
        for chunk, result in zip(step.prefill, prefilled, strict=True):
            seq = chunk.seq
            seq.num_computed += chunk.length
            self.stats.prompt_tokens_computed += chunk.length
            self._key_computed_blocks(seq)
            if result is not None:  # the chunk completed the prompt: its first token
                self.stats.prompt_cache_hit_tokens += seq.hit_tokens
                self.stats.prompt_cache_miss_tokens += seq.prompt_len - seq.hit_tokens
                deltas.append(self._extend(seq, result))
        for seq, result in zip(step.decode, decoded, strict=True):
            assert result is not None
            seq.num_computed += 1 + result.accepted
            if result.drafted:  # speculative decoding
                seq.num_draft_tokens += result.drafted
                seq.num_accepted_tokens += result.accepted
                self.stats.draft_tokens += result.drafted
                self.stats.accepted_tokens += result.accepted
            deltas.append(self._extend(seq, result))
        self.stats.steps += 1
        return deltas

    def _extend(self, seq: Sequence, result: StepTokens) -> Delta:
        """Append the step's tokens up to the first that finishes the sequence; what it gained."""
        seq.draft = result.draft
        new = result.tokens
        for k, token in enumerate(new):
            seq.token_ids.append(token)
            seq.finish_reason = self._finish_reason(seq, token)
            if seq.finish_reason is not None:
                new = new[: k + 1]
                break
        logprobs = result.logprobs[: len(new)] if result.logprobs is not None else None
        if seq.logprobs is not None and logprobs is not None:
            seq.logprobs.extend(logprobs)
        self.stats.generated_tokens += len(new)
        finished = seq.finish_reason is not None
        detok = seq.detok
        text = detok.take(finished) if detok is not None and seq.stream_text else ""
        if finished:
            if detok is not None:
                seq.text = detok.text
            self._free(seq)
        return Delta(seq.request_id, seq.index, new, text, logprobs, seq.finish_reason)

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        params = seq.params
        if (not params.ignore_eos and token in self.eos_token_ids) or token in params.stop_token_ids:
            return "stop"
        if seq.detok is not None and seq.detok.add(seq.output_ids):
            return "stop"
        if (
            len(seq.token_ids) - seq.prompt_len >= params.max_tokens
            or len(seq.token_ids) >= self.max_model_len
        ):
            return "length"
        return None
