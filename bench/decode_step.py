"""One decode step at a fixed batch: tinyseek's engine against transformers' DeepseekV3 forward.

The GRPO rollout case: many sequences decoding at once on a small model, where a step is mostly
per-op overhead. Builds a random-weight model from a preset (default `tiny`), prefills `--batch`
prompts of `--prompt-len` tokens in both, then times `--steps` decode steps of each (alternating
rounds, best round kept: the machine may be shared) and prints ms/step, tokens/s and the ratio.

- tinyseek: `Engine.step()` with every sequence decoding: scheduling, the forward over the paged
  latent cache, greedy sampling and the per-sequence bookkeeping, i.e. everything a rollout pays.
- transformers: `model(next_ids, past_key_values=cache)` plus the argmax, nothing else (no
  `generate` bookkeeping), so the ratio is conservative for tinyseek.
- `--compile`: a second engine with `compile=True` (its decode forward under torch.compile) runs
  interleaved with the other two; its first decode step includes the compile, reported apart, and
  its tokens are checked against the eager engine's. Its step is split in two: the compiled forward
  (timed around each call) and the rest, the engine's own Python and the sampling.

    PYTHONPATH=. python bench/decode_step.py                          # tiny preset, batch 256
    PYTHONPATH=. python bench/decode_step.py --preset small --batch 32 --profile
    PYTHONPATH=. python bench/decode_step.py --threads 1 --compile       # + the compiled engine
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=16, help="decode steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of tinyseek")
    parser.add_argument("--compile", action="store_true", help="also time an Engine(compile=True)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM
    from transformers.cache_utils import DynamicCache

    from tinyseek import ModelConfig, SamplingParams, Transformer
    from tinyseek.inference.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    config = ModelConfig.preset(args.preset, num_nextn_predict_layers=0)
    total_tokens = args.prompt_len + 2 + args.steps * (args.repeats + 1)
    with tempfile.TemporaryDirectory() as tmp:
        Transformer(config).save_pretrained(tmp)
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype).eval()
        model = Transformer.from_pretrained(tmp, dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, config.vocab_size, (args.batch, args.prompt_len), generator=gen)
    params = SamplingParams(temperature=0, max_tokens=total_tokens - args.prompt_len, ignore_eos=True)

    def start_engine(compile: bool) -> tuple[Engine, float, float]:
        """An engine with every prompt prefilled and one decode step run: (engine, prefill s, step s)."""
        engine = Engine(
            model,
            max_num_seqs=args.batch,
            max_model_len=total_tokens + 8,
            max_num_batched_tokens=args.batch * args.prompt_len,
            enable_prefix_caching=False,
            compile=compile,
        )
        for p in prompts.tolist():
            engine.add_request(p, params)
        start = time.perf_counter()
        engine.step()  # the prefill
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        engine.step()  # first decode step (compiled: with the compile)
        return engine, prefill_s, time.perf_counter() - start

    engine, prefill_s, first_decode_s = start_engine(compile=False)
    compiled, _, compile_s = start_engine(compile=True) if args.compile else (None, 0.0, 0.0)

    cache = DynamicCache(config=hf.config)
    with torch.no_grad():
        logits = hf(prompts, past_key_values=cache, use_cache=True).logits[:, -1]
    next_ids = logits.argmax(-1, keepdim=True)

    def hf_steps() -> float:
        nonlocal next_ids
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(args.steps):
                out = hf(next_ids, past_key_values=cache, use_cache=True)
                next_ids = out.logits[:, -1].argmax(-1, keepdim=True)
        return (time.perf_counter() - start) / args.steps

    tokens: dict[int, list[list[int]]] = {}  # per engine: each step's tokens, to compare the two
    forward_s: list[float] = []  # the compiled engine's forward calls, to split its step in two
    if compiled is not None:
        forward = compiled.runner.compiled_decode
        assert forward is not None

        def timed_forward(*inputs: object) -> torch.Tensor:
            start = time.perf_counter()
            out = forward(*inputs)
            forward_s.append(time.perf_counter() - start)
            return out

        compiled.runner.compiled_decode = timed_forward

    def ts_steps(engine: Engine) -> float:
        steps = tokens.setdefault(id(engine), [])
        start = time.perf_counter()
        for _ in range(args.steps):
            steps.append([d.token_ids[-1] for d in engine.step()])
        return (time.perf_counter() - start) / args.steps

    hf_s = ts_s = compiled_s = compiled_forward_s = float("inf")
    for _ in range(args.repeats):
        hf_s = min(hf_s, hf_steps())
        ts_s = min(ts_s, ts_steps(engine))
        if compiled is not None:
            forward_s.clear()
            round_s = ts_steps(compiled)
            if round_s < compiled_s:  # the best round, and how much of its step the forward took
                compiled_s, compiled_forward_s = round_s, sum(forward_s) / len(forward_s)
    report = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "dtype": args.dtype,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
        "tinyseek_ms_per_step": ts_s * 1e3,
        "transformers_ms_per_step": hf_s * 1e3,
        "tinyseek_tok_s": args.batch / ts_s,
        "transformers_tok_s": args.batch / hf_s,
        "speedup": hf_s / ts_s,
        "tinyseek_prefill_s": prefill_s,
        "tinyseek_first_decode_s": first_decode_s,
    }
    if compiled is not None:
        report |= {
            "compiled_ms_per_step": compiled_s * 1e3,
            "compiled_tok_s": args.batch / compiled_s,
            "compiled_speedup": hf_s / compiled_s,
            # of its step: the forward; the rest is the engine's own Python and the sampling
            "compiled_forward_ms_per_step": compiled_forward_s * 1e3,
            "compiled_first_decode_s": compile_s,  # includes the compile
            "compiled_same_tokens_as_eager": tokens[id(compiled)] == tokens[id(engine)],
        }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ts_steps(engine if compiled is None else compiled)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.preset} ({report['parameters'] / 1e6:.1f}M, {args.dtype}), batch {args.batch}, "
        f"{report['threads']} threads: tinyseek {report['tinyseek_ms_per_step']:.2f} ms/step "
        f"({report['tinyseek_tok_s']:.0f} tok/s) | transformers {report['transformers_ms_per_step']:.2f} "
        f"ms/step ({report['transformers_tok_s']:.0f} tok/s) | x{report['speedup']:.2f}"
    )
    if compiled is not None:
        print(
            f"compiled (compile=True): {report['compiled_ms_per_step']:.2f} ms/step "
            f"({report['compiled_tok_s']:.0f} tok/s) | x{report['compiled_speedup']:.2f} | first decode step "
            f"with the compile {compile_s:.1f} s | same tokens as eager: "
            f"{report['compiled_same_tokens_as_eager']}"
        )
        print(
            f"  of a compiled step: the forward {compiled_forward_s * 1e3:.2f} ms, the rest (scheduling, "
            f"inputs, sampling, bookkeeping) {(compiled_s - compiled_forward_s) * 1e3:.2f} ms"
        )
    print(
        f"tinyseek prefill {prefill_s * 1e3:.0f} ms, first decode step {first_decode_s * 1e3:.0f} ms "
        f"(load average at start {report['load_average_at_start']:.2f})"
    )


if __name__ == "__main__":
    main()
