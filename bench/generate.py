"""Greedy generation: tinyseek's engine against transformers' `generate`, and both against the roofline.

For each preset (default `mini`, ~24M parameters, and `small`, ~90M) it builds a random-weight model,
saves it in the HF layout, loads it in both, and at each batch size (default 1 and 32) generates
greedily from the same prompts in both. Prompts in a batch share one length, so transformers needs no
padding and the outputs must agree token for token (up to floating-point ties); the script counts them.

Timing: the two run interleaved (transformers, tinyseek, transformers, ...) `--repeats` times in one
process and the MEDIAN of each is kept. The machine may be shared: absolute tokens/s are noisy, the
ratio of the two medians measured side by side is the figure to read.

Roofline: the same run measures the machine's read bandwidth (a sum over a 256 MB tensor, sampled
between the timed runs, median: the roof under the load they ran under) and fp32 matmul peak (square
matmuls, best of several), and prints the config's bytes and FLOPs per
decoded token (tinyseek/cost/roofline.py) and each result's tokens/s as a share of the roofline's
(an fp32 roofline; with `--dtype bfloat16/auto` tinyseek streams half the bytes and is not expected
to stay greedy-identical to fp32 transformers). The fastest engine's generate is also split, from a
one-token generate timed in the same rounds: its prefill, and a decode step ((generate - prefill) /
(new tokens - 1)) against the step's roofline and against its serial bound (bytes / bandwidth +
FLOPs / peak: the step if memory traffic and arithmetic did not overlap at all).

    PYTHONPATH=. python bench/generate.py --threads 1                       # mini and small, batch 1 and 32
    PYTHONPATH=. python bench/generate.py --presets tiny --batch-sizes 1 --new-tokens 16
    PYTHONPATH=. python bench/generate.py --threads 1 --dtype auto     # bf16 where this CPU is faster in it
    PYTHONPATH=. python bench/generate.py --threads 1 --compile        # + LLM(compile=True), interleaved

`--compile` adds a third contender, the engine with its decode forward compiled (`LLM(compile=True)`),
timed in the same interleaved rounds; each batch size's first compiled call (its compile) is timed
apart and untimed warm-up, and its sequences are compared with the eager engine's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

DTYPES: dict[str, torch.dtype | str] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": "auto"}


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


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_seconds(fn, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_bandwidth(device: str, repeats: int = 5, megabytes: int = 256) -> float:
    """Read bandwidth in bytes/s: a sum over `megabytes` (256: beyond what the caches give one core on
    the README's machine, whose L3 is shared with other tenants; 32: what they often hold)."""
    big = torch.ones(megabytes * 2**18, device=device)
    return big.nbytes / best_seconds(lambda: big.sum(), repeats)


def measure_machine(device: str) -> dict[str, float]:
    """Read bandwidth (bytes/s) from memory and from a 32 MB working set, and fp32 matmul peak (FLOP/s)."""
    peak = 0.0
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        peak = max(peak, 2 * n**3 / best_seconds(lambda a=a, b=b: a @ b))
    return {
        "bandwidth_bytes_s": measure_bandwidth(device),
        "bandwidth_32mb_bytes_s": measure_bandwidth(device, megabytes=32),
        "fp32_peak_flops_s": peak,
    }


def bench_preset(preset: str, args: argparse.Namespace, machine: dict[str, float]) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from tinyseek import LLM, ModelConfig, SamplingParams, Transformer
    from tinyseek.cost.roofline import decode_roofline, generation_seconds, prefill_seconds

    torch.manual_seed(0)
    # transformers neither builds nor loads MTP modules, so the shared checkpoint has none.
    config = ModelConfig.preset(preset, num_nextn_predict_layers=0)
    with tempfile.TemporaryDirectory() as tmp:
        Transformer(config).save_pretrained(tmp)
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(args.device).eval()
        # No prefix caching: repeated runs of the same prompts must not skip their prefill.
        options = dict(dtype=DTYPES[args.dtype], device=args.device, max_num_seqs=max(args.batch_sizes),
                       max_model_len=1024, enable_prefix_caching=False)  # fmt: skip
        llm = LLM(tmp, **options)  # type: ignore[arg-type]
        compiled = LLM(tmp, compile=True, **options) if args.compile else None  # type: ignore[arg-type]
    n, p = args.new_tokens, args.prompt_len
    params = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
    first_token = SamplingParams(temperature=0, max_tokens=1, ignore_eos=True)  # a generate's prefill
    fastest = compiled or llm  # its generate is split into prefill and decode steps
    peak = machine["fp32_peak_flops_s"]
    per_token = decode_roofline(config, 1, p + n // 2)
    report: dict[str, Any] = {
        "preset": preset,
        "parameters": llm.engine.model.num_parameters(),
        "tinyseek_dtype": str(next(llm.engine.model.parameters()).dtype),
        "compile": args.compile,
        "bytes_per_decoded_token_batch_1": per_token.bytes,
        "flops_per_decoded_token": per_token.flops,
        "runs": [],
    }

    def hf_generate(ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
        return out[:, ids.shape[1] :].cpu()

    gen = torch.Generator().manual_seed(1)
    warm = torch.randint(0, config.vocab_size, (1, p), generator=gen).to(args.device)
    hf_generate(warm)
    llm.generate([warm[0].tolist()], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    for batch in args.batch_sizes:
        ids = torch.randint(0, config.vocab_size, (batch, p), generator=gen)
        hf_times, ts_times, compiled_times, prefill_times = [], [], [], []
        hf_out: torch.Tensor | None = None
        ts_out: list[Any] = []
        compiled_out: list[Any] = []
        compile_s = 0.0
        if compiled is not None:  # its first call at this batch size compiles; not timed
            start = time.perf_counter()
            compiled.generate(ids.tolist(), SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
            compile_s = time.perf_counter() - start
        bandwidths = []  # sampled between the timed runs: the roof under the same load as they ran
        for _ in range(args.repeats):  # interleaved: both see the same load
            bandwidths.append(measure_bandwidth(args.device, repeats=2))
            sync()
            start = time.perf_counter()
            hf_out = hf_generate(ids.to(args.device))
            sync()
            hf_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ts_out = llm.generate(ids.tolist(), params)
            sync()
            ts_times.append(time.perf_counter() - start)
            if compiled is not None:
                start = time.perf_counter()
                compiled_out = compiled.generate(ids.tolist(), params)
                sync()
                compiled_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            fastest.generate(ids.tolist(), first_token)
            sync()
            prefill_times.append(time.perf_counter() - start)
        assert hf_out is not None
        same = sum(o.token_ids == r for o, r in zip(ts_out, hf_out.tolist(), strict=True))
        hf_s, ts_s = statistics.median(hf_times), statistics.median(ts_times)
        bandwidth = statistics.median(bandwidths)
        roof_s = generation_seconds(config, batch, p, n, bandwidth, peak)
        step = decode_roofline(config, batch, p + n // 2)
        run = {
            "batch": batch,
            "transformers_tok_s": batch * n / hf_s,
            "tinyseek_tok_s": batch * n / ts_s,
            "speedup": hf_s / ts_s,
            "roofline_tok_s": batch * n / roof_s,
            "tinyseek_roofline_share": roof_s / ts_s,
            "transformers_roofline_share": roof_s / hf_s,
            "decode_step_bound": step.bound(bandwidth, peak),
            "identical_sequences": f"{same}/{batch}",
            "bandwidth_bytes_s": bandwidth,
            "seconds_tinyseek": ts_times,
            "seconds_transformers": hf_times,
        }
        if compiled is not None:
            compiled_s = statistics.median(compiled_times)
            compiled_same = sum(o.token_ids == r for o, r in zip(compiled_out, hf_out.tolist(), strict=True))
            run |= {
                "compiled_tok_s": batch * n / compiled_s,
                "compiled_speedup": hf_s / compiled_s,
                "compiled_roofline_share": roof_s / compiled_s,
                "compiled_identical_sequences": f"{compiled_same}/{batch}",
                "compiled_same_as_eager": [o.token_ids for o in compiled_out]
                == [o.token_ids for o in ts_out],
                "compile_and_first_call_s": compile_s,
                "seconds_compiled": compiled_times,
            }
        # The fastest engine's generate split: prefill, then (rest) / (n - 1) a decode step, each against
        # its roofline; the step also against the serial bound (memory, then arithmetic, no overlap).
        prefill_s = statistics.median(prefill_times)
        step_s = (statistics.median(compiled_times or ts_times) - prefill_s) / max(n - 1, 1)
        run |= {
            "split_engine": "compiled" if compiled is not None else "eager",
            "prefill_s": prefill_s,
            "prefill_roofline_share": prefill_seconds(config, batch, p, bandwidth, peak) / prefill_s,
            "decode_step_s": step_s,
            "decode_step_roofline_share": step.seconds(bandwidth, peak) / step_s,
            "decode_step_serial_share": step.serial_seconds(bandwidth, peak) / step_s,
        }
        report["runs"].append(run)
        if not args.json:
            print(
                f"{preset:>6} batch {batch:3d}: transformers {run['transformers_tok_s']:7.1f} tok/s | tinyseek "
                f"{run['tinyseek_tok_s']:7.1f} tok/s | x{run['speedup']:.2f} | roofline {run['roofline_tok_s']:7.1f} "
                f"tok/s ({run['decode_step_bound']}-bound at {bandwidth / 1e9:.1f} GB/s): tinyseek "
                f"{run['tinyseek_roofline_share']:.0%}, "
                f"transformers {run['transformers_roofline_share']:.0%} | identical {run['identical_sequences']}",
                flush=True,
            )
            if compiled is not None:
                print(
                    f"{preset:>6} batch {batch:3d}: compiled {run['compiled_tok_s']:7.1f} tok/s | "
                    f"x{run['compiled_speedup']:.2f} | roofline share {run['compiled_roofline_share']:.0%} | "
                    f"identical {run['compiled_identical_sequences']}, same as eager: "
                    f"{run['compiled_same_as_eager']} | compile + first call {compile_s:.1f} s",
                    flush=True,
                )
            print(
                f"{preset:>6} batch {batch:3d}: {run['split_engine']} = prefill {prefill_s * 1e3:.1f} ms "
                f"({run['prefill_roofline_share']:.0%} of its roofline) + {n - 1} steps of {step_s * 1e3:.2f} ms "
                f"({run['decode_step_roofline_share']:.0%} of the step's roofline "
                f"{step.seconds(bandwidth, peak) * 1e3:.2f} ms, {run['decode_step_serial_share']:.0%} of its "
                f"serial bound {step.serial_seconds(bandwidth, peak) * 1e3:.2f} ms)",
                flush=True,
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["mini", "small"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each, interleaved; median kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--dtype", default="float32", choices=sorted(DTYPES), help="tinyseek's weights (transformers: fp32)"
    )
    parser.add_argument("--compile", action="store_true", help="also time LLM(compile=True), interleaved")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    machine = measure_machine(args.device)
    report: dict[str, Any] = {
        "device": device_name(args.device),
        "load_average_at_start": os.getloadavg()[0],
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "timing": f"median of {args.repeats} interleaved runs of each, in one process",
        **machine,
        "presets": [],
    }
    if not args.json:
        print(
            f"device: {report['device']}, load average {report['load_average_at_start']:.2f}; "
            f"measured read bandwidth {machine['bandwidth_bytes_s'] / 1e9:.1f} GB/s (over 32 MB: "
            f"{machine['bandwidth_32mb_bytes_s'] / 1e9:.1f}), fp32 matmul peak "
            f"{machine['fp32_peak_flops_s'] / 1e9:.0f} GFLOP/s; {report['timing']}",
            flush=True,
        )
    for preset in args.presets:
        result = bench_preset(preset, args, machine)
        report["presets"].append(result)
        if not args.json:
            print(
                f"{preset:>6}: {result['parameters'] / 1e6:.1f}M parameters, tinyseek in {result['tinyseek_dtype']}; "
                f"per decoded token at batch 1 (fp32): "
                f"{result['bytes_per_decoded_token_batch_1'] / 1e6:.1f} MB, "
                f"{result['flops_per_decoded_token'] / 1e6:.1f} MFLOP (prompt {args.prompt_len}, "
                f"{args.new_tokens} new tokens)",
                flush=True,
            )
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
