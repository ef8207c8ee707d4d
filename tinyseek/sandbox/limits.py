"""Resource limits for one sandboxed run, and the outcome it reports.

Limits are plain numbers applied inside the sandbox by the launcher (rlimits) and outside by the
runner (wall clock, output cap, tmpfs size). Defaults are sized for small test programs: a second
or two of CPU, a few hundred MiB of address space, a handful of processes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one program may use; every field must be positive."""

    wall_seconds: float = 5.0  # wall clock from start to kill, sandbox start-up included
    cpu_seconds: int = 4  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later
    memory_bytes: int = 512 * MiB  # RLIMIT_AS (virtual address space)
    max_processes: int = 16  # RLIMIT_NPROC for the sandbox's own unprivileged uid (threads count)
    file_size_bytes: int = 16 * MiB  # RLIMIT_FSIZE: largest file the program may write
    open_files: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 1 * MiB  # cap on captured stdout and on stderr, each; the run is killed past it
    tmpfs_bytes: int = 32 * MiB  # size of the private writable /tmp (RAM-backed)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"Limits.{f.name} must be positive, got {value!r}")


class Status(str, enum.Enum):
    """How a run ended: exit 0, any other failure, out of time, or stopped by a resource limit."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    LIMIT = "limit"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one program run; `reason` says why it ended, in words."""

    status: Status
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    sandboxed: bool

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED
