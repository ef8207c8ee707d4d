"""Run untrusted Python in a bubblewrap sandbox with resource limits (see runner.py, bubblewrap.py)."""

from tinyseek.sandbox.bubblewrap import INSTALL_HINT
from tinyseek.sandbox.function_tests import FunctionTests, FunctionTestsRun, Outcome, run_function_tests
from tinyseek.sandbox.limits import Limits, RunResult, Status
from tinyseek.sandbox.pool import SandboxPool
from tinyseek.sandbox.runner import (
    Program,
    SandboxUnavailable,
    require_sandbox,
    run_program,
    run_python,
    sandbox_problem,
)

__all__ = [
    "INSTALL_HINT",
    "FunctionTests",
    "FunctionTestsRun",
    "Limits",
    "Outcome",
    "Program",
    "RunResult",
    "SandboxPool",
    "SandboxUnavailable",
    "Status",
    "require_sandbox",
    "run_function_tests",
    "run_program",
    "run_python",
    "sandbox_problem",
]
