"""Sandbox throughput: programs per second for a trivial program, with 1 and 2 workers.

For scale it also times a bare `python -I -S -c` start of the same program (no launcher, no
bubblewrap, no limits), the floor any process-per-program design pays.
Usage: python bench/sandbox.py [--programs 100] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tinyseek.sandbox import Limits, Program, SandboxPool
from tinyseek.sandbox.bubblewrap import interpreter

SOURCE = "print(sum(range(10)))"


def sandboxed_rate(workers: int, count: int) -> float:
    with SandboxPool(workers, Limits()) as pool:
        pool.run_programs([Program(SOURCE)] * workers)  # warm-up: probe, page cache
        start = time.perf_counter()
        results = pool.run_programs([Program(SOURCE)] * count)
        elapsed = time.perf_counter() - start
    if not all(r.passed and r.sandboxed and r.stdout == "45\n" for r in results):
        raise RuntimeError(f"a trivial program failed: {next(r for r in results if not r.passed)}")
    return count / elapsed


def bare_rate(workers: int, count: int) -> float:
    command = [interpreter(), "-I", "-S", "-c", SOURCE]
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        outputs = list(pool.map(lambda _: subprocess.run(command, capture_output=True).stdout, range(count)))
        elapsed = time.perf_counter() - start
    if any(out != b"45\n" for out in outputs):
        raise RuntimeError("a bare interpreter run failed")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="Sandbox throughput for a trivial program.")
    parser.add_argument("--programs", type=int, default=100, help="programs per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes to measure")
    args = parser.parse_args()
    for workers in args.workers:
        boxed = sandboxed_rate(workers, args.programs)
        bare = bare_rate(workers, args.programs)
        print(
            f"workers={workers}: sandboxed {boxed:6.1f} programs/s, bare interpreter {bare:6.1f} /s, "
            f"sandbox costs {bare / boxed:.2f}x"
        )


if __name__ == "__main__":
    main()
