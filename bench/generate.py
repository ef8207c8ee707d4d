"""Greedy generation: transformers' `generate` against tinyseek's engine, same checkpoint, same prompts.

Builds a random-weight model from a preset (default `small`), saves it in the HF layout, loads it in
both, generates greedily at several batch sizes and prints tokens/s, the ratio, whether the outputs
agree, the cache bytes per token of each, and the device. Prompts in a batch share one length, so
transformers needs no padding and the comparison is exact up to floating-point ties.

    PYTHONPATH=. python bench/generate.py                     # small preset, CPU, batches 1 8 32
    PYTHONPATH=. python bench/generate.py --batch-sizes 1 --new-tokens 16 --speculative
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def hf_cache_bytes_per_token(hf_model: torch.nn.Module, device: str) -> float:
    ids = torch.zeros(1, 8, dtype=torch.long, device=device)
    with torch.no_grad():
        cache = hf_model(ids, use_cache=True).past_key_values
    total = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    return total / ids.shape[1]


def time_call(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs of each, alternating; best is kept"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--speculative", action="store_true", help="also time MTP speculative decoding")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from tinyseek import LLM, ModelConfig, SamplingParams, Transformer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # transformers neither builds nor loads MTP modules, so the shared checkpoint has none.
    config = ModelConfig.preset(args.preset, num_nextn_predict_layers=0)
    with tempfile.TemporaryDirectory() as tmp:
        Transformer(config).save_pretrained(tmp)
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(args.device).eval()
        # No prefix caching: repeated runs of the same prompts must not skip their prefill.
        llm = LLM(tmp, device=args.device, max_num_seqs=max(args.batch_sizes), max_model_len=1024,
                  enable_prefix_caching=False)  # fmt: skip
    params = SamplingParams(temperature=0, max_tokens=args.new_tokens, ignore_eos=True)
    n = args.new_tokens
    report: dict = {
        "device": device_name(args.device),
        "load_average_at_start": os.getloadavg()[0],
        "preset": args.preset,
        "parameters": llm.engine.model.num_parameters(),
        "prompt_len": args.prompt_len,
        "new_tokens": n,
        "cache_bytes_per_token": {
            "tinyseek": llm.engine.cache.bytes_per_token,
            "transformers": hf_cache_bytes_per_token(hf, args.device),
        },
        "runs": [],
    }
    gen = torch.Generator().manual_seed(1)

    def hf_generate(ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
        return out[:, ids.shape[1] :].cpu()

    warm = torch.randint(0, config.vocab_size, (1, args.prompt_len), generator=gen).to(args.device)
    hf_generate(warm)
    llm.generate([warm[0].tolist()], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    for batch in args.batch_sizes:
        ids = torch.randint(0, config.vocab_size, (batch, args.prompt_len), generator=gen)
        hf_time = ts_time = float("inf")
        for _ in range(args.repeats):  # alternate, keep the best: the machine may be shared
            elapsed, hf_out = time_call(lambda ids=ids: hf_generate(ids.to(args.device)))
            hf_time = min(hf_time, elapsed)
            elapsed, ts_out = time_call(lambda ids=ids: llm.generate(ids.tolist(), params))
            ts_time = min(ts_time, elapsed)
        ours = [o.token_ids for o in ts_out]  # type: ignore[attr-defined]
        same = sum(o == r for o, r in zip(ours, hf_out.tolist(), strict=True))  # type: ignore[attr-defined]
        run = {
            "batch": batch,
            "transformers_tok_s": batch * n / hf_time,
            "tinyseek_tok_s": batch * n / ts_time,
            "speedup": hf_time / ts_time,
            "identical_sequences": f"{same}/{batch}",
        }
        report["runs"].append(run)
        if not args.json:
            print(
                f"batch {batch:3d}: transformers {run['transformers_tok_s']:8.1f} tok/s | tinyseek "
                f"{run['tinyseek_tok_s']:8.1f} tok/s | x{run['speedup']:.2f} | identical {run['identical_sequences']}",
                flush=True,
            )
    if args.speculative:
        spec_model = Transformer(ModelConfig.preset(args.preset)).to(args.device).eval()
        options = dict(max_num_seqs=max(args.batch_sizes), max_model_len=1024, enable_prefix_caching=False)
        plain = LLM(spec_model, **options)  # type: ignore[arg-type]
        spec = LLM(spec_model, speculative=True, **options)  # type: ignore[arg-type]
        for batch in args.batch_sizes:
            prompts = torch.randint(0, config.vocab_size, (batch, args.prompt_len), generator=gen).tolist()
            plain_time = spec_time = float("inf")
            for _ in range(args.repeats):
                elapsed, plain_out = time_call(lambda p=prompts: plain.generate(p, params))
                plain_time = min(plain_time, elapsed)
                elapsed, spec_out = time_call(lambda p=prompts: spec.generate(p, params))
                spec_time = min(spec_time, elapsed)
            same = sum(a.token_ids == b.token_ids for a, b in zip(plain_out, spec_out, strict=True))  # type: ignore[attr-defined]
            run = {
                "batch": batch,
                "plain_tok_s": batch * n / plain_time,
                "speculative_tok_s": batch * n / spec_time,
                "identical_sequences": f"{same}/{batch}",
                "acceptance_rate": spec.stats.acceptance_rate,
            }
            report.setdefault("speculative", []).append(run)
            if not args.json:
                print(
                    f"MTP speculative, batch {batch:3d}: plain {run['plain_tok_s']:8.1f} tok/s | speculative "
                    f"{run['speculative_tok_s']:8.1f} tok/s | acceptance {run['acceptance_rate']:.2f} "
                    f"(random MTP weights) | identical {run['identical_sequences']}",
                    flush=True,
                )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"device: {report['device']} (load average at start {report['load_average_at_start']:.2f})")
        print(
            f"preset {args.preset}: {report['parameters'] / 1e6:.1f}M parameters, prompt {args.prompt_len}, {n} new tokens"
        )
        cb = report["cache_bytes_per_token"]
        print(f"cache bytes/token: tinyseek {cb['tinyseek']} | transformers {cb['transformers']:.0f}")


if __name__ == "__main__":
    main()
