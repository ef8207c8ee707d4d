"""Training step: tinyseek's Transformer against transformers' DeepseekV3ForCausalLM, same config, batch, weights.

One step = forward + next-token cross-entropy + backward + AdamW step, under bf16 autocast over fp32
weights (or fp32). Both models are built from one checkpoint (MTP off: transformers has none), so
their first-step losses must agree; the script checks that, then alternates timed steps of each,
keeps the best, and prints tokens/s, MFU (FLOPs per token from tinyseek.cost.flops against this
device's peak: the datasheet on GPUs, a measured matmul peak on CPUs) and the ratio.

    PYTHONPATH=. python bench/train.py                               # tiny preset, bf16 autocast
    PYTHONPATH=. python bench/train.py --precision fp32 --threads 1  # AVX2-only CPUs emulate bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"cpu ({cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"


def make_step(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    device: str,
    bf16: bool,
) -> Callable[[torch.Tensor], float]:
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def step(ids: torch.Tensor) -> float:
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=bf16):
            logits = logits_of(ids)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def timed(step: Callable[[torch.Tensor], float], ids: torch.Tensor) -> tuple[float, float]:
    if ids.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss = step(ids)
    if ids.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="model preset (MTP is turned off for both)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each model, alternating")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="bf16 autocast or fp32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="compile tinyseek's blocks (and, on a CPU, use its attention kernel), as `tinyseek pretrain "
        "--compile` does",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from tinyseek import ModelConfig, Transformer
    from tinyseek.model import cpu_attention
    from tinyseek.train.peak import device_peak_flops, flops_per_token

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bf16 = args.precision == "bf16"
    config = ModelConfig.preset(args.preset, num_nextn_predict_layers=0)
    with tempfile.TemporaryDirectory() as tmp:
        Transformer(config).save_pretrained(tmp)
        ours = Transformer.from_pretrained(tmp, device=args.device).train()
        hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(args.device).train()
    if args.compile:  # as prepare_model does for `--compile`: compiled blocks, the CPU attention kernel
        for block in ours.layers:
            block.compile()
        if torch.device(args.device).type == "cpu":
            cpu_attention.enable(ours)
    steps = {
        "tinyseek": make_step(ours, list(ours.parameters()), args.device, bf16),
        "transformers": make_step(lambda ids: hf(ids).logits, list(hf.parameters()), args.device, bf16),
    }
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq_len), generator=gen).to(args.device)
    first = {name: timed(step, ids)[1] for name, step in steps.items()}  # same weights: same loss
    if args.compile:
        timed(steps["tinyseek"], ids)  # compiled graphs may be rebuilt once after the first backward
    best = {name: float("inf") for name in steps}
    for _ in range(args.steps):  # alternate, keep the best: the machine may be shared
        for name, step in steps.items():
            best[name] = min(best[name], timed(step, ids)[0])
    peak = device_peak_flops(torch.device(args.device), bf16)
    token_flops = flops_per_token(config, args.seq_len, with_mtp=False)
    tokens = args.batch * args.seq_len
    report: dict = {
        "device": device_name(args.device),
        "load_average_at_start": os.getloadavg()[0],
        "preset": args.preset,
        "precision": args.precision,
        "compiled": args.compile,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "first_step_loss": first,
        "peak_tflops": None if peak is None else peak / 1e12,
        "runs": {},
    }
    for name, seconds in best.items():
        tok_s = tokens / seconds
        report["runs"][name] = {
            "tokens_per_s": tok_s,
            "mfu": None if peak is None else token_flops * tok_s / peak,
        }
    report["speedup"] = best["transformers"] / best["tinyseek"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    compiled = ", tinyseek blocks compiled" if args.compile else ""
    print(f"{report['device']}, load {report['load_average_at_start']:.1f}; {args.preset}, {args.precision}{compiled}, "
          f"batch {args.batch} x {args.seq_len}; first-step loss {first['tinyseek']:.5f} vs "
          f"{first['transformers']:.5f}")  # fmt: skip
    for name, run in report["runs"].items():
        mfu = "n/a" if run["mfu"] is None else f"{100 * run['mfu']:.2f}%"
        print(f"  {name:12s} {run['tokens_per_s']:10.0f} tokens/s   MFU {mfu}")
    print(f"  tinyseek / transformers: x{report['speedup']:.2f}")


if __name__ == "__main__":
    main()
