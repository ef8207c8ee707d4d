"""ModelRunner: turns a scheduled step into model forwards over the paged latent cache, then tokens.

Design choices:
- One forward for all prefill chunks (right-padded to the longest) and one for all decoding sequences:
  batched prefill and batched decode. The model's absorbed MLA path runs over the cache bound for
  that forward (`PagedLatentCache.bind`), so prefill continues from cached prefixes for free.
- The head runs only on the rows that produce a token (the last prompt position), not on padding.
- Decode is lean: a handful of small index tensors per step (rows, positions, slots) built from the
  scheduler's persistent block table, then one forward and one batched sampling call.
- MTP speculative decoding (`speculative=True`): every decode forward verifies [last token, draft]
  at once; tokens are sampled position by position exactly as plain decoding would, and the draft is
  accepted when it equals the sampled token, so greedy (and seeded) output is identical to plain
  decoding. The MTP module then runs once over the same positions to draft the next token; its
  latents live in the cache layer after the main layers.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import cast

import torch

from tinyseek.inference.latent_cache import PagedLatentCache
from tinyseek.inference.request import Sequence
from tinyseek.inference.sampler import Sampler, top_logprobs
from tinyseek.inference.scheduler import PrefillChunk
from tinyseek.model.transformer import MTPModule, Transformer


@dataclass
class StepTokens:
    """Tokens one sequence gained this step, with their logprob entries when asked."""

    tokens: list[int]
    logprobs: list[dict[int, float]] | None = None
    drafted: int = 0
    accepted: int = 0


class ModelRunner:
    def __init__(
        self,
        model: Transformer,
        cache: PagedLatentCache,
        block_table: torch.Tensor,
        sampler: Sampler,
        speculative: bool = False,
    ):
        self.model, self.cache, self.block_table, self.sampler = model, cache, block_table, sampler
        self.block_size = cache.block_size
        self.speculative = speculative
        self.device = block_table.device
        self.mtp_layer = model.config.num_hidden_layers
        # On CPU, x @ W.T for a few rows streams the vocab x hidden head ~2.5x slower than x @ Wt with
        # Wt stored [hidden, vocab]: keep that copy, rebuilt whenever the weight changes (RL updates).
        self.transpose_head = self.device.type == "cpu"
        self._head_t: torch.Tensor | None = None
        self._head_key: tuple[int, int] | None = None

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.model.lm_head.weight
        if not self.transpose_head:
            return self.model.lm_head(hidden)
        key = (weight.data_ptr(), 0 if weight.is_inference() else weight._version)
        if self._head_t is None or key != self._head_key:
            self._head_t, self._head_key = weight.detach().t().contiguous(), key
        return hidden @ self._head_t

    def _slots(self, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Cache slot of each (row, position) [B, T]."""
        blocks = self.block_table[rows[:, None], positions // self.block_size]
        return blocks * self.block_size + positions % self.block_size

    def _bind(
        self, rows: torch.Tensor, write_positions: torch.Tensor, valid: torch.Tensor, span: int
    ) -> None:
        clamped = write_positions.masked_fill(~valid, 0)
        write = self._slots(rows, clamped).masked_fill(~valid, 0).reshape(-1)
        read_positions = torch.arange(span, device=self.device).expand(len(rows), span)
        self.cache.bind(write, self._slots(rows, read_positions))

    def _draft(self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """MTP depth 1 over the bound positions; returns its normed hidden states [B, T, H]."""
        module = cast(MTPModule, self.model.mtp[0])
        cos, sin = self.model.rotary(positions)
        h = module(
            hidden, self.model.embed_tokens(next_ids), cos, sin, positions, self.cache.layer(self.mtp_layer)
        )
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
    @torch.inference_mode()
    def prefill(self, chunks: list[PrefillChunk]) -> list[StepTokens | None]:
        """Compute the chunks' latents; a chunk that completes its prompt also yields the first token."""
        width = max(c.length for c in chunks)
        ids = torch.zeros(len(chunks), width + 1, dtype=torch.long)
        for i, c in enumerate(chunks):
            part = c.seq.token_ids[c.start : c.start + c.length + 1]  # + the next prompt token, if any
            ids[i, : len(part)] = torch.tensor(part)
        ids = ids.to(self.device)
        starts = torch.tensor([c.start for c in chunks], device=self.device)
        lengths = torch.tensor([c.length for c in chunks], device=self.device)
        offsets = torch.arange(width, device=self.device)
        positions = starts[:, None] + offsets
        valid = offsets < lengths[:, None]
        rows = torch.tensor([c.seq.row for c in chunks], device=self.device)
        self._bind(rows, positions, valid, int((starts + lengths).max()))
        hidden = self.model.hidden_states(ids[:, :width], positions, self.cache)
        last = hidden[torch.arange(len(chunks), device=self.device), lengths - 1]

        done = [i for i, c in enumerate(chunks) if c.completes_prompt]
        results: list[StepTokens | None] = [None] * len(chunks)
        if done:
            idx = torch.tensor(done, device=self.device)
            seqs = [chunks[i].seq for i in done]
            logits = self._logits(last[idx])
            tokens = self.sampler.sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
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
                    chunks[i].seq.draft = drafts[j]
        return results

    # ---- decode --------------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, seqs: list[Sequence]) -> list[StepTokens]:
        if self.speculative:
            return self._decode_speculative(seqs)
        rows = torch.tensor([s.row for s in seqs], device=self.device)
        positions = torch.tensor([s.num_computed for s in seqs], device=self.device)[:, None]
        ids = torch.tensor([s.token_ids[-1] for s in seqs], device=self.device)[:, None]
        span = max(s.num_computed for s in seqs) + 1
        self._bind(rows, positions, torch.ones_like(positions, dtype=torch.bool), span)
        logits = self._logits(self.model.hidden_states(ids, positions, self.cache)[:, -1])
        tokens = self.sampler.sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
        logprobs = self._logprobs(logits, tokens, seqs)
        return [
            StepTokens([t], None if lp is None else [lp])
            for t, lp in zip(tokens.tolist(), logprobs, strict=True)
        ]

    def _decode_speculative(self, seqs: list[Sequence]) -> list[StepTokens]:
        """Verify [last, draft] in one forward, accept the draft when sampling agrees, draft again."""
        n = len(seqs)
        rows = torch.tensor([s.row for s in seqs], device=self.device)
        start = torch.tensor([s.num_computed for s in seqs], device=self.device)
        positions = start[:, None] + torch.arange(2, device=self.device)
        drafts = torch.tensor([s.draft for s in seqs], device=self.device)
        ids = torch.stack([torch.tensor([s.token_ids[-1] for s in seqs], device=self.device), drafts], 1)
        self._bind(rows, positions, torch.ones_like(positions, dtype=torch.bool), int(start.max()) + 2)
        hidden = self.model.hidden_states(ids, positions, self.cache)
        logits = self._logits(hidden)
        params, gens = [s.params for s in seqs], [s.generator for s in seqs]
        first = self.sampler.sample(logits[:, 0], params, gens)
        first_lp = self._logprobs(logits[:, 0], first, seqs)
        accepted = first == drafts
        acc_rows = accepted.nonzero().flatten().tolist()
        second = first.clone()  # rejected rows: a placeholder MTP input whose output is discarded
        second_lp: list[dict[int, float] | None] = [None] * n
        if acc_rows:
            idx = torch.tensor(acc_rows, device=self.device)
            acc_seqs = [seqs[i] for i in acc_rows]
            picked = self.sampler.sample(
                logits[idx, 1], [s.params for s in acc_seqs], [s.generator for s in acc_seqs]
            )
            second[idx] = picked
            for i, lp in zip(acc_rows, self._logprobs(logits[idx, 1], picked, acc_seqs), strict=True):
                second_lp[i] = lp
        mtp_ids = torch.stack([first, second], 1)
        mtp = self._draft(hidden, mtp_ids, positions)
        new_drafts = self._logits(mtp[torch.arange(n, device=self.device), accepted.long()]).argmax(-1)

        out = []
        accepted_list = accepted.tolist()
        for i, (a, b, d) in enumerate(zip(first.tolist(), second.tolist(), new_drafts.tolist(), strict=True)):
            seqs[i].draft = d
            tokens = [a, b] if accepted_list[i] else [a]
            lps = [lp for lp in (first_lp[i], second_lp[i]) if lp is not None]
            out.append(StepTokens(tokens, lps or None, drafted=1, accepted=int(accepted_list[i])))
        return out
