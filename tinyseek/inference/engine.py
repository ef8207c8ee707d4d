"""Engine: requests in, per-step deltas out; continuous batching over a paged, prefix-cached latent cache.

A request's path, top-down: `add_request` tokenizes and validates it and hands its n completions
(`Sequence`s) to the Scheduler; each `step()` is `scheduler.schedule()` → `runner.run()` →
`scheduler.postprocess()` (scheduler.py says what each does, model_runner.py how a step is computed);
a request whose completions have all finished comes back as a `RequestOutput` on its last `Delta`.

Design choices:
- The engine is a step loop a caller drives: `add_request` and `abort` at any time (thread-safe, one
  lock), `step()` runs one scheduled step and returns the `Delta`s it produced. The offline `LLM`,
  the streaming generator `stream()`, the asyncio wrapper and the server are all loops over `step()`.
- The engine owns what is about requests as a whole (ids, tokenization, the n completions of one
  request, text); the scheduler owns each completion's life, including the finish rules.
- The engine may share its model with a trainer (RL): a change of any weight's version counter
  (in-place optimizer steps, load_state_dict) empties the prefix cache before the next step, so no
  latent computed with old weights is reused.
- Weights are laid out for decoding when the engine is built (`lay_out_for_decode`): same values and
  shapes, each matrix stored input-major, so that x @ Wᵀ for a few rows is a plain (NN) product for
  BLAS (on one CPU a decode step at batch 1 ~30% faster, mini preset), or row-major [out, in] where
  a compiled CPU engine's kernels read them (cpu_kernels.py); outputs are unchanged. On the CPU they
  then move into one huge-page-backed buffer in forward order (weight_arena.py).
- `compile=True` compiles the decode forward with torch.compile (model_runner.py, latent_cache.py):
  faster steps at every batch size, after tens of seconds of compiling per graph, so it is opt-in
  (tests, the GRPO loop and the server run eager).
- Text is decoded incrementally only where needed (streamed text or stop strings); otherwise once,
  when the completion finishes, so token-only workloads (RL rollouts) pay nothing for text.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tinyseek.inference.block_manager import BlockManager
from tinyseek.inference.detokenizer import IncrementalDetokenizer
from tinyseek.inference.latent_cache import LatentCache
from tinyseek.inference.model_runner import ModelRunner
from tinyseek.inference.request import Delta, RequestOutput
from tinyseek.inference.request import Sequence as Seq
from tinyseek.inference.sampler import Sampler
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.inference.scheduler import EngineStats, Scheduler
from tinyseek.inference.weight_arena import pack_weights
from tinyseek.model.moe import Experts
from tinyseek.model.transformer import Transformer

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2**30

__all__ = ["Engine", "EngineStats"]


def lay_out_for_decode(model: Transformer, kernels: bool = False) -> None:
    """Store every weight matrix as a decode step reads it fastest, in place, values unchanged.

    nn.Linear computes x @ Wᵀ: with W [out, in] row-major that is an NT product, which CPU BLAS runs
    markedly slower than NN for a few rows (a decode step's shape), so for BLAS each matrix is stored
    input-major (Wᵀ contiguous). The CPU decode kernels of a compiled engine (`kernels`, cpu_kernels.py)
    read the rows of fp32 W, so there every fp32 matrix stays row-major [out, in] (mini, batch 32: a step ~1.35x
    faster than input-major through BLAS; at batch 1 the kernel reads them as fast as BLAS input-major).
    Parameters keep their identity, shape and values (an optimizer sharing the model keeps working);
    distributed (DTensor) parameters are left alone."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            weights = [(module.weight, 0, 1)]
        elif isinstance(module, Experts):
            weights = [(module.gate_up_proj, 1, 2), (module.down_proj, 1, 2)]
        else:
            continue
        for weight, a, b in weights:
            input_major = not (kernels and weight.dtype == torch.float32)  # the kernels' dtype
            stored = weight.data.transpose(a, b) if input_major else weight.data
            if type(weight.data) is torch.Tensor and not stored.is_contiguous():
                weight.data = stored.contiguous().transpose(a, b) if input_major else stored.contiguous()


@dataclass
class _Request:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    seqs: list[Seq]


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Any | None = None,
        *,
        max_num_seqs: int = 256,
        max_model_len: int | None = None,
        max_cache_tokens: int | None = None,
        cache_memory_bytes: int | None = None,
        block_size: int = 16,
        max_num_batched_tokens: int = 4096,
        enable_prefix_caching: bool = True,
        speculative: bool = False,
        compile: bool = False,
        eos_token_ids: Sequence[int] | None = None,
        seed: int = 0,
    ):
        config = model.config
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len or config.max_position_embeddings
        for name, value in (("max_num_seqs", max_num_seqs), ("block_size", block_size),
                            ("max_num_batched_tokens", max_num_batched_tokens),
                            ("max_model_len", self.max_model_len)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if self.max_model_len > config.max_position_embeddings:
            raise ValueError(
                f"max_model_len={self.max_model_len}: expected <= max_position_embeddings="
                f"{config.max_position_embeddings}"
            )
        if speculative and config.num_nextn_predict_layers < 1:
            raise ValueError(
                "speculative=True: expected a model with MTP modules (num_nextn_predict_layers >= 1)"
            )
        param = next(model.parameters())
        n_layers = config.num_hidden_layers + (1 if speculative else 0)
        per_token = LatentCache.bytes_per_token_for(config, param.dtype, n_layers)
        if max_cache_tokens is None:
            budget = DEFAULT_CACHE_BYTES if cache_memory_bytes is None else cache_memory_bytes
            max_cache_tokens = min(max_num_seqs * self.max_model_len, budget // per_token)
        if max_cache_tokens < block_size:
            raise ValueError(
                f"max_cache_tokens={max_cache_tokens}: expected at least one block of {block_size} tokens "
                f"({per_token} bytes per token)"
            )
        num_blocks = math.ceil(max_cache_tokens / block_size) + 1  # + the padding sink
        if eos_token_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            eos = config.eos_token_id if eos is None else eos
            eos_token_ids = [] if eos is None else [eos]
        self.eos_token_ids = set(eos_token_ids)
        self.scheduler = Scheduler(
            BlockManager(num_blocks, block_size, enable_prefix_caching),
            max_num_seqs,
            self.max_model_len,
            max_num_batched_tokens,
            self.eos_token_ids,
            lookahead=1 if speculative else 0,
            device=param.device,
        )
        self.cache = LatentCache(config, num_blocks, block_size, param.dtype, param.device, n_layers)
        self.runner = ModelRunner(
            model, self.cache, self.scheduler.block_table, Sampler(seed), speculative, compile
        )
        lay_out_for_decode(model, self.cache.paged_kernel)  # the runner decided where the kernels run
        pack_weights(model)  # its CPU weights (decoding streams them) into one buffer of 2 MB pages
        self.requests: dict[str, _Request] = {}
        self._ids = itertools.count()
        self._lock = threading.RLock()
        # Collected once: walking the module tree every step costs more than a tiny model's forward.
        self._weight_tensors = [t for t in (*model.parameters(), *model.buffers()) if not t.is_inference()]
        self._weights_version = self._version_of_weights()
        log.info(
            "engine: %d cache blocks of %d tokens (%d bytes/token, %.1f MiB), %d sequences max%s",
            num_blocks - 1, block_size, per_token, self.cache.nbytes / 2**20, max_num_seqs,
            ", MTP speculative decoding" if speculative else "",
        )  # fmt: skip

    @property
    def block_manager(self) -> BlockManager:
        return self.scheduler.block_manager

    @property
    def stats(self) -> EngineStats:
        return self.scheduler.stats

    # ---- requests ------------------------------------------------------------------------------
    def encode_prompt(self, prompt: str | Sequence[int]) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("prompt is a string but the engine has no tokenizer: pass token ids")
            return prompt, list(self.tokenizer.encode(prompt))
        ids = list(prompt)
        vocab = self.model.config.vocab_size
        if not all(isinstance(t, int) and 0 <= t < vocab for t in ids):
            raise ValueError(f"prompt: expected token ids in [0, {vocab}), got {ids[:8]}...")
        return None, ids

    def add_request(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        stream_text: bool = False,
    ) -> str:
        """Queue a request (n completions); returns its id. Raises ValueError for a bad request."""
        params = params or SamplingParams()
        text, ids = self.encode_prompt(prompt)
        if not ids:
            raise ValueError("prompt: expected at least one token, got an empty prompt")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"prompt: {len(ids)} tokens, expected fewer than the context max_model_len={self.max_model_len}"
            )
        if params.stop and self.tokenizer is None:
            raise ValueError("stop: stop strings need a tokenizer; use stop_token_ids with token-id prompts")
        with self._lock:
            request_id = request_id or f"req-{next(self._ids)}"
            if request_id in self.requests:
                raise ValueError(f"request_id={request_id!r}: already in use")
            seqs = [self._sequence(request_id, i, text, ids, params, stream_text) for i in range(params.n)]
            need = self.scheduler.blocks_needed(seqs[0])
            manager = self.block_manager
            if need > manager.capacity:
                raise ValueError(
                    f"max_tokens={params.max_tokens}: prompt + max_tokens need {need * manager.block_size} "
                    f"cache tokens, the cache holds {manager.capacity * manager.block_size}"
                )
            self.requests[request_id] = _Request(request_id, text, ids, seqs)
            for seq in seqs:
                self.scheduler.add(seq)
        return request_id

    def _sequence(
        self, rid: str, index: int, text: str | None, ids: list[int], params: SamplingParams, stream: bool
    ) -> Seq:
        generator = None
        if params.seed is not None:
            generator = torch.Generator().manual_seed(params.seed + index)
        seq = Seq(rid, index, text, len(ids), list(ids), params, generator, stream_text=stream)
        seq.logprobs = [] if params.logprobs is not None else None
        if self.tokenizer is not None and (stream or params.stop):
            seq.detok = IncrementalDetokenizer(
                self.tokenizer, params.stop_strings, params.skip_special_tokens
            )
        return seq

    def abort(self, request_id: str) -> bool:
        """Cancel a request: its sequences stop and free their cache now. False if it is unknown."""
        with self._lock:
            request = self.requests.pop(request_id, None)
            if request is None:
                return False
            for seq in request.seqs:
                self.scheduler.abort(seq)
            return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    # ---- the step ------------------------------------------------------------------------------
    def step(self) -> list[Delta]:
        """Run one scheduled step; returns what each touched completion gained."""
        with self._lock:
            self._forget_stale_prefixes()
            step = self.scheduler.schedule()
            results = self.runner.run(step)
            deltas = self.scheduler.postprocess(step, results)
            last_of: dict[str, Delta] = {}
            for delta in deltas:
                if delta.finished:
                    self._give_text(self.requests[delta.request_id].seqs[delta.index])
                    last_of[delta.request_id] = delta
            for request_id, delta in last_of.items():  # a request whose completions all finished
                request = self.requests[request_id]
                if all(s.finish_reason is not None for s in request.seqs):
                    delta.request_output = self.output(request)
                    del self.requests[request_id]
            return deltas

    def _version_of_weights(self) -> int:
        return sum(t._version for t in self._weight_tensors)

    def _forget_stale_prefixes(self) -> None:
        version = self._version_of_weights()
        if version != self._weights_version:
            log.info("model weights changed: prefix cache emptied")
            self.block_manager.reset()
            self._weights_version = version

    def _give_text(self, seq: Seq) -> None:
        """A finished completion's text: cut by its detokenizer, else decoded once now."""
        if seq.detok is None and self.tokenizer is not None:
            skip = seq.params.skip_special_tokens
            seq.text = str(self.tokenizer.decode(seq.output_ids, skip_special_tokens=skip))

    def output(self, request: _Request) -> RequestOutput:
        first = request.seqs[0]
        return RequestOutput(
            request_id=request.request_id,
            prompt=request.prompt,
            prompt_token_ids=request.prompt_token_ids,
            outputs=[s.completion() for s in request.seqs],
            prompt_cache_hit_tokens=first.hit_tokens,
            prompt_cache_miss_tokens=first.prompt_len - first.hit_tokens,
            finished=all(s.finish_reason is not None for s in request.seqs),
        )

    # ---- streaming -----------------------------------------------------------------------------
    def stream(
        self, prompt: str | Sequence[int], params: SamplingParams | None = None, request_id: str | None = None
    ) -> Iterator[Delta]:
        """Generate one request, yielding its deltas as they come. Drives the engine itself (one
        consumer); closing the iterator early aborts the request. For many concurrent consumers see
        `tinyseek.serve.engine_loop.EngineLoop` (a step thread feeding asyncio queues)."""
        rid = self.add_request(prompt, params, request_id, stream_text=True)
        try:
            while True:
                for delta in self.step():
                    if delta.request_id == rid:
                        yield delta
                        if delta.request_output is not None:
                            return
        finally:
            self.abort(rid)
