"""ModelRunner: one scheduled step in, each sequence's new tokens out; it changes no sequence.

Design choices:
- Prefill chunks run in length buckets: chunks sorted by length, a bucket closed when padding it to
  its longest chunk would add more than a quarter to its tokens, one forward per bucket. A mixed
  batch then costs about what its tokens cost (prefill is compute-bound, so the extra forwards are
  cheap). All decoding sequences run in one forward, longest context first, and its attention is
  ragged: consecutive rows of similar context length form a group that gathers and attends over its
  own span (a group pads at most a tenth of its context: on an evaluation with scattered lengths,
  0.1 gave ~6% more tokens per CPU-second than 0.25 and ~15% more than one padded group; 0.5 never
  split), so a short row never pays for the longest.
- The model's absorbed MLA path runs over the latent cache bound for that forward (`LatentCache.bind`),
  so prefill continues from cached prefixes for free. Chunks of 128 tokens or more from position 0
  run expanded instead, in buckets of their own (`starts_empty`, attention.py): they only store their
  latents.
- The head runs only on the rows that produce a token (the last prompt position), not on padding.
- Decode is lean: a handful of small index tensors per step (rows, positions, slots) built from the
  scheduler's persistent block table, then one forward and one batched sampling call.
- `compile=True` runs the plain decode forward (ids, positions -> logits) under
  `torch.compile(dynamic=True, fullgraph=True)` with inductor's C++ wrapper (the Python one cost
  0.6 ms a step at mini batch 1 and 1 ms at tiny batch 256, of 4.4 and 10.8 ms): one graph for
  batch 1 and one for larger batches (sizes 0 and 1 are specialized), plus one when a step's
  attention is ragged, whatever the batch, context lengths and requests coming and going (the
  pool's sizes are marked static); the pool writes stay in place (latent_cache.py). Its guards check
  the step's inputs, not the model: the model's modules and parameters must keep their types, shapes
  and layout for the engine's life (values may change in place, as RL's do). On a CPU with
  AVX-512, where the C++ kernels build (cpu_kernels.py), the attention reads the pool in place (rows
  then neither sorted nor grouped, no ragged graph) and a graph pass hands the projections of a few
  rows and the routed experts to a kernel that streams the weights. Opt-in: a graph takes ~10-60 s to compile.
  There the prefill forward is compiled too, the same way (one graph for one row and one for several,
  any lengths; chunks padded to two tokens at least, every row's last logits computed so that the
  graph never depends on how many rows complete): its elementwise work fuses, and the head's 32 rows
  go to the kernel. 32 prompts of 32 tokens prefilled in 0.89 (mini) and 0.86 (small) of the eager
  prefill's time. The speculative verify forward and prefill elsewhere stay eager.
- MTP speculative decoding (`speculative=True`): every decode forward verifies [last token, draft]
  at once; tokens are sampled position by position exactly as plain decoding would, and the draft is
  accepted when it equals the sampled token, so greedy (and seeded) output is identical to plain
  decoding. The MTP module then runs once over the same positions to draft the next token; its
  latents live in the cache layer after the main layers. The new draft goes back in `StepTokens`.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import Any, cast

import numpy as np
import torch
import torch.fx.experimental._config as fx_config

from tinyseek.inference import cpu_kernels
from tinyseek.inference.latent_cache import LatentCache
from tinyseek.inference.request import Sequence, StepTokens
from tinyseek.inference.sampler import Sampler, top_logprobs
from tinyseek.inference.scheduler import PrefillChunk, ScheduledStep
from tinyseek.model.transformer import MTPModule, Transformer

PADDING_WASTE = 0.25  # a prefill bucket pads at most this share of its tokens
RAGGED_WASTE = 0.1  # a decode attention group pads at most this share of its context blocks
# A chunk from position 0 of at least this many tokens attends expanded (attention.py). Below it the two
# paths cost the same (compiled `small`, 32 prompts of 32 tokens: 375 against 378 ms absorbed), and
# short prompts (every recipe of the README: ~90-token R1-Zero prompts) keep the absorbed path's
# rounding, so their documented runs stay bit-reproducible.
EXPANDED_PREFILL_TOKENS = 128


def long_tensor(values: Seq[int], device: torch.device) -> torch.Tensor:
    """A 1-D int64 tensor of `values`, through numpy: torch.tensor parses a list of 256 ints in ~60 us,
    numpy in ~9, and a decode step builds three such tensors (tiny, batch 256: a step is ~10 ms)."""
    return torch.from_numpy(np.array(values, dtype=np.int64)).to(device)


def length_buckets(lengths: Seq[int], waste: float = PADDING_WASTE) -> list[list[int]]:
    """Indices of `lengths` grouped so that padding a group to its longest adds at most `waste`."""
    buckets: list[list[int]] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if buckets and lengths[buckets[-1][0]] * (len(buckets[-1]) + 1) <= (1 + waste) * (
            tokens + lengths[i]
        ):
            buckets[-1].append(i)
            tokens += lengths[i]
        else:
            buckets.append([i])
            tokens = lengths[i]
    return buckets


def ragged_groups(spans: Seq[int], waste: float = RAGGED_WASTE) -> list[tuple[slice, int]]:
    """Consecutive rows (longest context first) grouped so that padding a group to its longest span
    adds at most `waste` to its spans: (rows, longest span) per group."""
    groups: list[tuple[slice, int]] = []
    start = longest = total = 0
    for i, span in enumerate(spans):
        widest = max(longest, span)
        if i > start and widest * (i - start + 1) > (1 + waste) * (total + span):
            groups.append((slice(start, i), longest))
            start, widest, total = i, span, 0
        longest = widest
        total += span
    groups.append((slice(start, len(spans)), longest))
    return groups


class ModelRunner:
    def __init__(
        self,
        model: Transformer,
        cache: LatentCache,
        block_table: torch.Tensor,
        sampler: Sampler,
        speculative: bool = False,
        compile: bool = False,
    ):
        self.model = model
        self.cache = cache
        self.block_table = block_table
        self.sampler = sampler
        self.block_size = cache.block_size
        self.speculative = speculative
        self.device = block_table.device
        self.mtp_layer = model.config.num_hidden_layers
        self.compiled_decode = None
        if compile:  # inductor's C++ wrapper: ~0.6 ms a step less than its Python one (mini, batch 1)
            # The pool's sizes are fixed: left dynamic, one equal to the batch size by chance (the latent
            # width, 12, at batch 12) was guarded equal to it, and the next batch size recompiled.
            torch._dynamo.mark_static(cache.latents)
            cache.paged_kernel = self.device.type == "cpu" and cpu_kernels.usable()
            sampler.cpu_argmax = cache.paged_kernel
            # The model is the engine's and fixed for its life (weights change only in place), so the
            # ~2,000 guards on its modules and parameters go: ~0.4 ms a step (small, batch 1). The
            # guards on the step's inputs (ids, positions, the cache's bound tables) stay.
            # Inductor's check of each op output's size and stride builds a std::stringstream per call
            # (130-260 a step: ~4% of a tiny batch-1 step); the ops' fake kernels are opcheck-tested.
            options: dict[str, Any] = {
                "cpp_wrapper": True,
                "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe,
                "size_asserts": False,
            }
            if cache.paged_kernel:  # the projections of a few rows, too (weights laid out by the engine)
                options["post_grad_custom_post_pass"] = cpu_kernels.DecodeLinears()
            self.compiled_decode = self._compile(self._decode_logits, options)
        # The compiled decode over the paged kernel: no ragged groups, so no sorting of rows either.
        self.paged_decode = self.compiled_decode is not None and cache.paged_kernel and not speculative
        # Prefill compiled too where the paged kernel reads the pool (module docstring).
        self.compiled_prefill = None
        if self.paged_decode:
            self.compiled_prefill = self._compile(self._prefill_logits, options)

    def _compile(
        self, method: Callable[..., torch.Tensor], options: dict[str, Any]
    ) -> Callable[..., torch.Tensor]:
        """torch.compile keeps graphs per code object, at most 8 of them under fullgraph: shared by every
        runner, the graphs of a process's engines add up (each cache size has its own) and the fifth
        engine failed. Each runner compiles its own copy of the method's code."""
        fn = cast(types.MethodType, method).__func__
        own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__)
        return torch.compile(types.MethodType(own, self), dynamic=True, fullgraph=True, options=options)

    @torch.inference_mode()
    def run(self, step: ScheduledStep) -> list[StepTokens | None]:
        """Results aligned with step.prefill then step.decode; None for a chunk that ends mid-prompt."""
        results: list[StepTokens | None] = self._prefill(step.prefill) if step.prefill else []
        if step.decode and self.paged_decode:  # the kernel takes rows in any order
            results.extend(self._decode(step.decode))
        elif step.decode:
            # Longest context first, so that rows of similar length are neighbours (ragged attention).
            order = sorted(range(len(step.decode)), key=lambda i: -step.decode[i].num_computed)
            decode = self._decode_speculative if self.speculative else self._decode
            decoded = decode([step.decode[i] for i in order])
            in_step_order: list[StepTokens | None] = [None] * len(order)
            for i, result in zip(order, decoded, strict=True):
                in_step_order[i] = result
            results.extend(in_step_order)
        return results

    # ---- shared pieces -------------------------------------------------------------------------
    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden)

    def _sample(self, logits: torch.Tensor, seqs: Seq[Sequence]) -> torch.Tensor:
        return self.sampler.sample(logits, [s.params for s in seqs], [s.generator for s in seqs])

    def _slots(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Cache slot of each (row, position) [B, T]."""
        blocks = self.block_table[rows[:, None], positions // self.block_size]
        return blocks * self.block_size + positions % self.block_size

    def _bind(
        self,
        rows: torch.Tensor,
        write_positions: torch.Tensor,
        valid: torch.Tensor | None,
        spans: list[int],
        tables: bool = False,
        starts_empty: bool = False,
    ) -> None:
        """Bind the cache for one forward: each row writes its valid positions (None: all, as in
        decoding) and reads the blocks of its `spans[row]` positions, in ragged groups when the spans
        differ much (`tables`: also as tensors, for the compiled decode forward). `starts_empty`: every
        row starts at position 0, so the model attends over the forward's own tokens (expanded MLA)."""
        self.cache.starts_empty = starts_empty
        if valid is None:
            write = self._slots(rows, write_positions).reshape(-1)
        else:
            clamped = write_positions.masked_fill(~valid, 0)
            write = self._slots(rows, clamped).masked_fill(~valid, 0).reshape(-1)
        if self.paged_decode:  # one group: the kernel stops each row at its own position
            groups = [(slice(0, len(spans)), -(-max(spans) // self.block_size))]
        else:
            groups = ragged_groups([-(-span // self.block_size) for span in spans])
        if tables:
            self.cache.bind(write, [])
            self.cache.bind_tables(self.block_table[rows, : max(w for _, w in groups)], groups)
            return
        read = [(group, self.block_table[rows[group], :width]) for group, width in groups]
        self.cache.bind(write, read)

    def _draft(self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """MTP depth 1 over the bound positions; returns its normed hidden states [B, T, H]."""
        module = cast(MTPModule, self.model.mtp[0])
        cos, sin = self.model.rotary(positions)
        next_embeds = self.model.embed_tokens(next_ids)
        h = module(hidden, next_embeds, cos, sin, positions, self.cache.layer(self.mtp_layer))
        return module.shared_head_norm(h)

    def _logprobs(
        self, logits: torch.Tensor, tokens: torch.Tensor, seqs: Seq[Sequence]
    ) -> list[dict[int, float] | None]:
        want = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
        out: list[dict[int, float] | None] = [None] * len(seqs)
        if want:
            idx = torch.tensor(want, device=logits.device)
            counts = [seqs[i].params.logprobs or 0 for i in want]
            for i, entry in zip(want, top_logprobs(logits[idx], tokens[idx], counts), strict=True):
                out[i] = entry
        return out

    # ---- prefill -------------------------------------------------------------------------------
    def _prefill(self, chunks: list[PrefillChunk]) -> list[StepTokens | None]:
        results: list[StepTokens | None] = [None] * len(chunks)
        # Long chunks from position 0 attend expanded, the others absorbed, each kind in buckets of its
        # own: a chunk's path (and its rounding) never depends on what shares its step.
        expanded = [c.start == 0 and c.length >= EXPANDED_PREFILL_TOKENS for c in chunks]
        for kind in (True, False):
            members = [i for i in range(len(chunks)) if expanded[i] == kind]
            for bucket in length_buckets([chunks[i].length for i in members]):
                rows = [members[j] for j in bucket]
                for i, result in zip(
                    rows, self._prefill_bucket([chunks[i] for i in rows], kind), strict=True
                ):
                    results[i] = result
        return results

    def _prefill_bucket(self, chunks: list[PrefillChunk], expanded: bool) -> list[StepTokens | None]:
        """Compute the chunks' latents in one forward (`expanded`: chunks from position 0, attending
        over themselves); a chunk that completes its prompt also yields its first token and, speculating,
        its first draft."""
        results: list[StepTokens | None] = [None] * len(chunks)
        compiled = self.compiled_prefill
        width = max(c.length for c in chunks)
        if compiled is not None:  # one-token chunks would get a graph of their own (size 1 specializes)
            width = max(width, 2)
        rows_of_ids = np.zeros((len(chunks), width + 1), dtype=np.int64)  # numpy: see long_tensor
        for i, c in enumerate(chunks):
            part = c.seq.token_ids[c.start : c.start + c.length + 1]  # + the next prompt token, if any
            rows_of_ids[i, : len(part)] = part
        ids = torch.from_numpy(rows_of_ids).to(self.device)
        starts = long_tensor([c.start for c in chunks], self.device)
        lengths = long_tensor([c.length for c in chunks], self.device)
        offsets = torch.arange(width, device=self.device)
        positions = starts[:, None] + offsets
        valid = offsets < lengths[:, None]
        rows = long_tensor([c.seq.row for c in chunks], self.device)
        spans = [int((starts + lengths).max())] * len(chunks)
        self._bind(rows, positions, valid, spans, compiled is not None, starts_empty=expanded)
        if compiled is not None:  # every row's logits, however many rows complete: one graph
            # No duck sizing: sizes equal by chance in the first call (the reads' length and a row's
            # tokens, say) would be guarded equal, and the next prefill would compile again.
            with fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
                last_logits = compiled(ids[:, :width], positions, self.cache, lengths - 1)
        else:
            hidden = self.model.hidden_states(ids[:, :width], positions, self.cache)
        done = [i for i, c in enumerate(chunks) if c.completes_prompt]
        if done:
            idx = torch.tensor(done, device=self.device)
            seqs = [chunks[i].seq for i in done]
            logits = last_logits[idx] if compiled is not None else self._logits(hidden[idx, lengths[idx] - 1])
            tokens = self._sample(logits, seqs)
            logprobs = self._logprobs(logits, tokens, seqs)
            for j, i in enumerate(done):
                entry = logprobs[j]
                results[i] = StepTokens([int(tokens[j])], None if entry is None else [entry])
            # The token after the prompt is the one just sampled (it is the MTP's last input).
            ids[idx, lengths[idx]] = tokens
        if self.speculative:
            mtp = self._draft(hidden, ids[:, 1:], positions)
            if done:
                drafts = self._logits(mtp[idx, lengths[idx] - 1]).argmax(dim=-1).tolist()
                for j, i in enumerate(done):
                    cast(StepTokens, results[i]).draft = drafts[j]
        return results

    # ---- decode --------------------------------------------------------------------------------
    def _decode(self, seqs: list[Sequence]) -> list[StepTokens]:
        rows = long_tensor([s.row for s in seqs], self.device)
        positions = long_tensor([s.num_computed for s in seqs], self.device)[:, None]
        ids = long_tensor([s.token_ids[-1] for s in seqs], self.device)[:, None]
        spans = [s.num_computed + 1 for s in seqs]
        compiled = self.compiled_decode
        self._bind(rows, positions, None, spans, compiled is not None)
        logits = (compiled or self._decode_logits)(ids, positions, self.cache)
        tokens = self._sample(logits, seqs)
        logprobs = self._logprobs(logits, tokens, seqs)
        return [
            StepTokens([t], None if lp is None else [lp])
            for t, lp in zip(tokens.tolist(), logprobs, strict=True)
        ]

    def _prefill_logits(
        self, ids: torch.Tensor, positions: torch.Tensor, cache: LatentCache, last: torch.Tensor
    ) -> torch.Tensor:
        """The compiled prefill forward: logits [B, vocab] at each row's position `last` [B]."""
        hidden = self.model.hidden_states(ids, positions, cache)
        return self._logits(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])

    def _decode_logits(self, ids: torch.Tensor, positions: torch.Tensor, cache: LatentCache) -> torch.Tensor:
        """The decode forward: one token per row in, next-token logits [B, vocab] out."""
        return self._logits(self.model.hidden_states(ids, positions, cache)[:, -1])

    def _decode_speculative(self, seqs: list[Sequence]) -> list[StepTokens]:
        """Verify [last, draft] in one forward, accept the draft when sampling agrees, draft again."""
        n = len(seqs)
        rows = long_tensor([s.row for s in seqs], self.device)
        start = long_tensor([s.num_computed for s in seqs], self.device)
        positions = start[:, None] + torch.arange(2, device=self.device)
        drafts = long_tensor([cast(int, s.draft) for s in seqs], self.device)
        last = long_tensor([s.token_ids[-1] for s in seqs], self.device)
        ids = torch.stack([last, drafts], 1)
        spans = [s.num_computed + 2 for s in seqs]
        self._bind(rows, positions, None, spans)
        hidden = self.model.hidden_states(ids, positions, self.cache)
        logits = self._logits(hidden)
        first = self._sample(logits[:, 0], seqs)
        first_lp = self._logprobs(logits[:, 0], first, seqs)
        accepted = first == drafts
        acc_rows = accepted.nonzero().flatten().tolist()
        second = first.clone()  # rejected rows: a placeholder MTP input whose output is discarded
        second_lp: list[dict[int, float] | None] = [None] * n
        if acc_rows:
            idx = torch.tensor(acc_rows, device=self.device)
            acc_seqs = [seqs[i] for i in acc_rows]
            picked = self._sample(logits[idx, 1], acc_seqs)
            second[idx] = picked
            for i, lp in zip(acc_rows, self._logprobs(logits[idx, 1], picked, acc_seqs), strict=True):
                second_lp[i] = lp
        mtp = self._draft(hidden, torch.stack([first, second], 1), positions)
        new_drafts = self._logits(mtp[torch.arange(n, device=self.device), accepted.long()]).argmax(-1)

        out = []
        rows_out = zip(first.tolist(), second.tolist(), new_drafts.tolist(), accepted.tolist(), strict=True)
        for i, (a, b, d, ok) in enumerate(rows_out):
            lps = [lp for lp in (first_lp[i], second_lp[i]) if lp is not None]
            out.append(StepTokens([a, b] if ok else [a], lps or None, draft=d, drafted=1, accepted=int(ok)))
        return out
