"""Run many sandboxed programs in parallel.

Each run is a subprocess that the calling thread supervises (mostly waiting on pipes), so a
thread pool is enough: one thread per concurrent sandbox, sized to the CPU cores by default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from tinyseek.sandbox.function_tests import FunctionTests, FunctionTestsRun, run_function_tests
from tinyseek.sandbox.limits import Limits, RunResult
from tinyseek.sandbox.runner import Program, require_sandbox, run_program


class SandboxPool:
    """A fixed number of sandbox workers; results come back in input order."""

    def __init__(
        self, workers: int | None = None, limits: Limits | None = None, allow_unsandboxed: bool = False
    ) -> None:
        workers = workers if workers is not None else (os.cpu_count() or 1)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        require_sandbox(allow_unsandboxed)  # refuse at construction, not on the first job
        self.workers = workers
        self.limits = limits or Limits()
        self.allow_unsandboxed = allow_unsandboxed
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox")

    def run_programs(self, programs: Sequence[Program]) -> list[RunResult]:
        return list(
            self._executor.map(lambda p: run_program(p, self.limits, self.allow_unsandboxed), programs)
        )

    def run_function_tests(self, jobs: Sequence[FunctionTests]) -> list[FunctionTestsRun]:
        return list(
            self._executor.map(lambda j: run_function_tests(j, self.limits, self.allow_unsandboxed), jobs)
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
