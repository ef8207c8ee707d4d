"""Compiled CPU training's causal attention kernel against SDPA, forward + backward, the model's inputs.

The expanded MLA path attends with q, k [B, S, H, qk_head_dim] and v a [B, S, H, v_head_dim] view of
kv_b_proj's output; SDPA gets v padded to the keys' width (its flash kernel needs equal widths), as the
model calls it. Both run in one process, alternating, `--pairs` times; prints each one's median time,
the median of the pairs' ratios (kernel / SDPA) and their range, and the largest difference of outputs
and gradients.

    PYTHONPATH=. python bench/causal_attention.py --threads 1                 # tiny: 8 x 256, 4 heads
    PYTHONPATH=. python bench/causal_attention.py --threads 1 --seq-len 1024 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tinyseek import ModelConfig
from tinyseek.model import cpu_attention
from tinyseek.model.attention import causal_sdpa


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="model preset: heads and widths")
    parser.add_argument("--batch", type=int, default=8, help="sequences")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--pairs", type=int, default=30, help="timed (kernel, SDPA) pairs, alternating")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not cpu_attention.load():
        raise SystemExit("the CPU attention kernel did not build (see the log): nothing to compare")
    config = ModelConfig.preset(args.preset)
    heads, width, v_width = config.num_attention_heads, config.qk_head_dim, config.v_head_dim
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.seq_len, heads)
    q = torch.randn(*shape, width, generator=gen).requires_grad_()
    k = torch.randn(*shape, width, generator=gen).requires_grad_()
    kv = torch.randn(*shape, config.qk_nope_head_dim + v_width, generator=gen).requires_grad_()
    grad = torch.randn(*shape, v_width, generator=gen)

    def step(attend: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        for t in (q, k, kv):
            t.grad = None
        out = attend(q, k, kv[..., config.qk_nope_head_dim :], config.softmax_scale)
        out.backward(grad)
        return [out.detach(), q.grad, k.grad, kv.grad]

    runs = {"kernel": cpu_attention.causal_attention, "sdpa": causal_sdpa}
    results = {name: step(attend) for name, attend in runs.items()}
    error = max((a - b).abs().max().item() for a, b in zip(*results.values(), strict=True))
    for _ in range(2):
        for attend in runs.values():
            step(attend)
    times: dict[str, list[float]] = {name: [] for name in runs}
    ratios = []
    for i in range(args.pairs):
        for name in runs if i % 2 == 0 else reversed(runs):
            start = time.perf_counter()
            step(runs[name])
            times[name].append(time.perf_counter() - start)
        ratios.append(times["kernel"][-1] / times["sdpa"][-1])
    print(f"{args.preset}: {args.batch} x {args.seq_len} tokens, {heads} heads, widths {width} / {v_width}, "
          f"{torch.get_num_threads()} threads; forward + backward")  # fmt: skip
    for name, seconds in times.items():
        print(f"  {name:7s} {1e3 * statistics.median(seconds):8.2f} ms")
    print(f"  kernel / SDPA time: median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
          f"; largest difference of outputs and gradients {error:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
