"""Sampling at a rollout's batch: tinyseek's Sampler over [batch, vocab] logits, per setting, and top-p's
sort against torch's stable sort, the reference it replaces on a CPU (inference/sampler.py).

Top-p sorts the whole vocabulary every step, and R1's evaluation samples at T 0.6, top-p 0.95. For each
vocabulary size the script times `Sampler.sample` greedy, at T 1 and at T 0.6 with top-p 0.95, then the
two sorts of the same probabilities alternating (`--repeats` pairs, median of each and of their ratios),
and checks that they give the same order.

    PYTHONPATH=. python bench/sampling.py --threads 1
    PYTHONPATH=. python bench/sampling.py --batch 32 --vocab 32000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def seconds(repeats: int, fn: Callable[..., object], *inputs: object) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*inputs)
        times.append(time.perf_counter() - start)
    return times


def stable_sort(probs: torch.Tensor) -> torch.Tensor:
    return probs.sort(dim=-1, descending=True, stable=True).indices


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--vocab", type=int, nargs="+", default=[512, 10_240, 32_000])
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed calls of each (sorts: pairs, alternating)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    from tinyseek.inference.sampler import Sampler, sort_descending
    from tinyseek.inference.sampling_params import SamplingParams

    if args.threads:
        torch.set_num_threads(args.threads)
    sampler = Sampler(seed=0)
    settings = {
        "greedy": SamplingParams(temperature=0),
        "T 1": SamplingParams(temperature=1.0),
        "T 0.6, top-p 0.95": SamplingParams(temperature=0.6, top_p=0.95),
    }
    print(f"batch {args.batch}, {torch.get_num_threads()} threads; medians of {args.repeats}")
    for vocab in args.vocab:
        logits = torch.randn(args.batch, vocab, generator=torch.Generator().manual_seed(vocab))
        cells = []
        with torch.inference_mode():
            for name, params in settings.items():
                rows, generators = [params] * args.batch, [None] * args.batch
                t = statistics.median(seconds(args.repeats, sampler.sample, logits, rows, generators))
                cells.append(f"{name} {t * 1e3:.2f} ms")
            probs = (logits / 0.6).softmax(dim=-1)
            same = torch.equal(sort_descending(probs)[1], stable_sort(probs))
            ours_s, ref_s = [], []
            for _ in range(args.repeats):
                ours_s += seconds(1, sort_descending, probs)
                ref_s += seconds(1, stable_sort, probs)
        ratio = statistics.median(a / b for a, b in zip(ours_s, ref_s, strict=True))
        print(f"vocab {vocab:>6}: sample: " + " | ".join(cells))
        print(
            f"              top-p's sort {statistics.median(ours_s) * 1e3:.2f} ms against torch's stable sort "
            f"{statistics.median(ref_s) * 1e3:.2f} ms: x{ratio:.3f} of its time | same order: {same}"
        )


if __name__ == "__main__":
    main()
