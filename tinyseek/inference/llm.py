"""LLM: the offline API, in the shape vLLM users know.

    llm = LLM("path/to/model")                       # HF layout: config.json, *.safetensors, tokenizer.json
    outs = llm.generate(["2+2="], SamplingParams(temperature=0, max_tokens=8))
    outs[0].text, outs[0].token_ids, outs[0].finish_reason, outs[0].prompt_cache_hit_tokens

Design choices:
- A thin loop over `Engine`: all prompts are queued at once and the engine batches them continuously;
  outputs come back in prompt order.
- A model directory brings its tokenizer (tokenizer.json, loaded lazily through tinyseek.tokenizer) and
  its end-of-sequence ids (generation_config.json, else config.json). Any tokenizer object with
  encode / decode / apply_chat_template / eos_token_id can be passed instead; without one, prompts
  are token-id lists and outputs carry token ids only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from tinyseek.inference.auto_dtype import pick_dtype
from tinyseek.inference.engine import Engine
from tinyseek.inference.request import Delta, RequestOutput
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.inference.scheduler import EngineStats
from tinyseek.model.transformer import Transformer

Prompt = str | Sequence[int]
AUTO_DTYPE_BATCH = 32  # dtype="auto" times decode at this batch (or max_num_seqs when smaller)
Messages = Sequence[Mapping[str, Any]]


def _eos_from_generation_config(directory: Path) -> list[int] | None:
    file = directory / "generation_config.json"
    if not file.is_file():
        return None
    eos = json.loads(file.read_text()).get("eos_token_id")
    if eos is None:
        return None
    return list(eos) if isinstance(eos, list) else [eos]


class LLM:
    def __init__(
        self,
        model: str | Path | Transformer,
        tokenizer: Any | None = None,
        *,
        dtype: torch.dtype | str = torch.float32,
        device: str | torch.device = "cpu",
        **engine_options: Any,
    ):
        """A Transformer is used as given (dtype and device apply to loading a directory; `dtype="auto"`
        times fp32 against bf16 weights on this machine and keeps the faster, see auto_dtype.py).
        `engine_options` go to `Engine`: max_num_seqs, max_model_len, max_cache_tokens,
        cache_memory_bytes, block_size, max_num_batched_tokens, enable_prefix_caching,
        speculative, compile (the decode forward under torch.compile: see latent_cache.py), eos_token_ids,
        seed."""
        if isinstance(model, (str, Path)):
            directory = Path(model)
            if not (directory / "config.json").is_file():
                raise FileNotFoundError(f"model={str(model)!r}: expected a model directory with config.json")
            if dtype == "auto":
                model = Transformer.from_pretrained(directory, device=device)
                batch = min(engine_options.get("max_num_seqs", 256), AUTO_DTYPE_BATCH)
                model.to_dtype(pick_dtype(model, batch))
            elif isinstance(dtype, torch.dtype):
                model = Transformer.from_pretrained(directory, dtype=dtype, device=device)
            else:
                raise ValueError(f"dtype={dtype!r}: expected a torch dtype or 'auto'")
            if tokenizer is None and (directory / "tokenizer.json").is_file():
                from tinyseek.tokenizer import Tokenizer

                tokenizer = Tokenizer.from_pretrained(directory)
            engine_options.setdefault("eos_token_ids", _eos_from_generation_config(directory))
        elif not isinstance(model, Transformer):
            raise ValueError(
                f"model: expected a model directory or a Transformer, got {type(model).__name__}"
            )
        self.engine = Engine(model, tokenizer, **engine_options)

    @property
    def tokenizer(self) -> Any | None:
        return self.engine.tokenizer

    @property
    def stats(self) -> EngineStats:
        """Engine counters so far: tokens, prefix-cache hits/misses, MTP drafts and acceptance rate."""
        return self.engine.stats

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Complete every prompt (a string or a token-id list); outputs in prompt order."""
        batch = _as_batch(prompts)
        if params is None or isinstance(params, SamplingParams):
            per_prompt = [params or SamplingParams()] * len(batch)
        else:
            per_prompt = list(params)
            if len(per_prompt) != len(batch):
                raise ValueError(
                    f"params: expected one SamplingParams or {len(batch)}, got {len(per_prompt)}"
                )
        ids: list[str] = []
        try:
            for prompt, p in zip(batch, per_prompt, strict=True):
                ids.append(self.engine.add_request(prompt, p))
        except ValueError:
            for rid in ids:
                self.engine.abort(rid)
            raise
        done: dict[str, RequestOutput] = {}
        while len(done) < len(ids):
            if not self.engine.has_unfinished():
                raise RuntimeError(
                    f"engine went idle with {len(ids) - len(done)} requests unfinished (aborted?)"
                )
            for delta in self.engine.step():
                if delta.request_output is not None:
                    done[delta.request_id] = delta.request_output
        return [done[rid] for rid in ids]

    def chat(
        self,
        messages: Messages | Sequence[Messages],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        """Apply the chat template (with the generation prompt) to one or several conversations."""
        conversations = [messages] if messages and isinstance(messages[0], Mapping) else messages
        return self.generate([self.chat_prompt(c) for c in conversations], params)  # type: ignore[arg-type]

    def chat_prompt(self, messages: Messages) -> list[int]:
        if self.tokenizer is None:
            raise ValueError("chat: this LLM has no tokenizer to apply a chat template with")
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, Mapping) else ids)

    def stream(self, prompt: Prompt, params: SamplingParams | None = None) -> Iterator[Delta]:
        """Deltas (new token ids and text) of one completion as they are generated."""
        return self.engine.stream(prompt, params)


def _as_batch(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    items = list(prompts)
    if not items:
        raise ValueError("prompts: expected at least one prompt")
    if all(isinstance(t, int) for t in items):
        return [items]  # type: ignore[list-item]
    for p in items:
        if not isinstance(p, (str, list, tuple)):
            raise ValueError(f"prompts: expected strings or token-id lists, got {type(p).__name__}")
    return items  # type: ignore[return-value]
