"""Call a function from untrusted source on test inputs in the sandbox, and check its outputs.

Only the inputs go into the sandbox (see function_harness.py); outputs come back as JSON and are
compared here against the expected values after the same JSON round trip, as canonical JSON
text, so 1 and True or a list and a tuple compare as JSON sees them, and no object from the
program (with its own __eq__) ever takes part in the comparison.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.sandbox.limits import Limits, RunResult
from tinyseek.sandbox.runner import Program, run_program

HARNESS_SOURCE = Path(__file__).with_name("function_harness.py").read_text()


@dataclass(frozen=True)
class FunctionTests:
    """One job: `function_name` from `source`, called as function(*args) for each args in inputs."""

    source: str
    function_name: str
    inputs: Sequence[Sequence[Any]]
    per_test_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.function_name.isidentifier():
            raise ValueError(f"function_name must be a Python identifier, got {self.function_name!r}")
        if self.per_test_seconds <= 0:
            raise ValueError(f"per_test_seconds must be positive, got {self.per_test_seconds!r}")

    def program(self) -> Program:
        request = {
            "function": self.function_name,
            "inputs": [list(args) for args in self.inputs],
            "per_test_seconds": self.per_test_seconds,
        }
        return Program(HARNESS_SOURCE, json.dumps(request), {"solution.py": self.source})


@dataclass(frozen=True)
class Outcome:
    """What one call returned (`value`) or raised (`error`); missing calls never ran to the end."""

    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class FunctionTestsRun:
    outcomes: list[Outcome | None]  # one per input; None where no result came back
    run: RunResult

    def passed(self, expected: Sequence[Any]) -> list[bool]:
        """Per test: did the call return exactly the expected value (compared as JSON)?"""
        if len(expected) != len(self.outcomes):
            raise ValueError(f"expected {len(self.outcomes)} expected values, got {len(expected)}")
        return [
            outcome is not None and outcome.error is None and canonical(outcome.value) == canonical(want)
            for outcome, want in zip(self.outcomes, expected, strict=True)
        ]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def parse_outcomes(stdout: str, count: int) -> list[Outcome | None]:
    """First well-formed result line per test index; anything else on stdout is ignored."""
    outcomes: list[Outcome | None] = [None] * count
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
            i = record["i"]
        except (ValueError, TypeError, KeyError):
            continue
        if not (isinstance(i, int) and 0 <= i < count) or outcomes[i] is not None:
            continue
        if "value" in record:
            outcomes[i] = Outcome(value=record["value"])
        elif isinstance(record.get("error"), str):
            outcomes[i] = Outcome(error=record["error"])
    return outcomes


def run_function_tests(
    job: FunctionTests, limits: Limits | None = None, allow_unsandboxed: bool = False
) -> FunctionTestsRun:
    run = run_program(job.program(), limits, allow_unsandboxed)
    return FunctionTestsRun(parse_outcomes(run.stdout, len(job.inputs)), run)
