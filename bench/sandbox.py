"""Sandbox throughput: programs per second for a trivial program, with 1 and 2 workers.

For scale it also times a bare `python -I -S -c` start of the same program (no launcher, no
bubblewrap, no limits), the floor any process-per-program design pays.
`--seccomp-cost` instead alternates runs with and without the seccomp filter (one worker, best of
three rounds each), to show what the filter costs.
Usage: python bench/sandbox.py [--programs 100] [--workers 1 2] [--seccomp-cost]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tinyseek.sandbox import Limits, Program, SandboxPool
from tinyseek.sandbox.bubblewrap import find_bwrap, interpreter
from tinyseek.sandbox.runner import _run_sandboxed

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


def seccomp_cost(count: int, rounds: int = 3) -> None:
    bwrap = find_bwrap()
    if bwrap is None:
        raise RuntimeError("bwrap not found")
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for syscall_filter in (True, False):
            start = time.perf_counter()
            for _ in range(count):
                result = _run_sandboxed(bwrap, interpreter(), Program(SOURCE), Limits(), syscall_filter)
                if result.stdout != "45\n":
                    raise RuntimeError(f"a trivial program failed: {result}")
            rates[syscall_filter].append(count / (time.perf_counter() - start))
    for syscall_filter, values in rates.items():
        label = "with seccomp filter" if syscall_filter else "without filter"
        print(f"{label:>20}: best {max(values):6.1f} programs/s of {', '.join(f'{v:.1f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Sandbox throughput for a trivial program.")
    parser.add_argument("--programs", type=int, default=100, help="programs per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes to measure")
    parser.add_argument("--seccomp-cost", action="store_true", help="compare runs with and without seccomp")
    args = parser.parse_args()
    if args.seccomp_cost:
        seccomp_cost(args.programs)
        return
    for workers in args.workers:
        boxed = sandboxed_rate(workers, args.programs)
        bare = bare_rate(workers, args.programs)
        print(
            f"workers={workers}: sandboxed {boxed:6.1f} programs/s, bare interpreter {bare:6.1f} /s, "
            f"sandbox costs {bare / boxed:.2f}x"
        )


if __name__ == "__main__":
    main()
