"""The compiled engine's few-row linear kernel against BLAS, on a decode step's shapes.

A decode step multiplies a few rows (the batch, or an expert's share of it) by weights that come from
memory or L3, not from a warm cache. For each shape this times, over enough distinct fp32 weights to
fill `--weights-mb` (default 94 MB, more than a core's cache share), `tinyseek::decode_linear` (weights
row-major [out, in], read in place) against torch's BLAS on the same weights both ways: x @ Wᵀ with W
row-major (NT) and with Wᵀ contiguous (NN, the eager engine's layout). Best of `--repeats` passes over
all the weights; prints GB/s of weights read and the kernel's ratio to the faster BLAS layout.

    PYTHONPATH=. python bench/decode_linear.py --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from tinyseek.inference import cpu_kernels

# (rows, in, out): mini's head and dense MLP at batch 32, an expert's gate_up and down at 8 rows (top-4
# of 16 experts at batch 32), small's head at batch 32, then batch 16, 64 and 1 (each of the kernel's
# three forms: dot products up to 27 rows, the broadcast form from 28 to 64, its own one for one row).
SHAPES = [(32, 384, 10240), (32, 384, 1024), (8, 384, 256), (8, 128, 384), (32, 512, 32000), (16, 384, 576),
          (64, 384, 10240), (1, 384, 10240), (1, 512, 32000)]  # fmt: skip


def best_seconds(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                 weights: list[torch.Tensor], repeats: int) -> float:  # fmt: skip
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for w in weights:
            fn(x, w)
        best = min(best, (time.perf_counter() - start) / len(weights))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights-mb", type=float, default=94.0, help="distinct weights cycled per shape")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_kernels.load():
        raise SystemExit("the CPU kernels did not build (a C++ compiler and ninja are needed)")
    kernel = torch.ops.tinyseek.decode_linear
    print(
        f"{args.threads} thread(s), {args.weights_mb:.0f} MB of distinct fp32 weights per shape, best of {args.repeats}"
    )
    for rows, n_in, n_out in SHAPES:
        mb = n_in * n_out * 4 / 1e6
        weights = [torch.randn(n_out, n_in) for _ in range(max(2, int(args.weights_mb // mb)))]
        input_major = [w.T.contiguous() for w in weights]
        x = torch.randn(rows, n_in)
        torch.testing.assert_close(kernel(x, weights[0]), x @ weights[0].T, atol=1e-3, rtol=1e-4)
        nt = best_seconds(lambda x, w: x @ w.T, x, weights, args.repeats)
        nn = best_seconds(torch.mm, x, input_major, args.repeats)
        ours = best_seconds(kernel, x, weights, args.repeats)
        gbps = [mb / 1e3 / t for t in (nt, nn, ours)]
        print(f"rows {rows:3d} x [{n_in}, {n_out:5d}]: BLAS NT {gbps[0]:5.1f} GB/s | BLAS NN {gbps[1]:5.1f} GB/s | "
              f"kernel {gbps[2]:5.1f} GB/s | x{min(nt, nn) / ours:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
