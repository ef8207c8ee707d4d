"""Run one Python program in the sandbox and report how it ended.

The runner owns everything outside the sandbox: it feeds files and stdin through memfds (no host
temp files), reads stdout/stderr incrementally with a size cap, enforces the wall clock, and on
any overrun SIGKILLs the sandbox's init so the kernel tears down the whole PID namespace before
the call returns (nothing the program started survives it).

Whether bubblewrap works is probed once per interpreter and cached. Without it the runner refuses
unless the caller passes allow_unsandboxed=True, which runs the same launcher (rlimits, cleared
environment, private temp dir) without isolation: for trusted code only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import select
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tinyseek.sandbox.bubblewrap import (
    INSTALL_HINT,
    LAUNCHER_SOURCE,
    SANDBOX_PATH,
    bwrap_command,
    find_bwrap,
    interpreter,
    launcher_arguments,
)
from tinyseek.sandbox.limits import Limits, RunResult, Status
from tinyseek.sandbox.seccomp import build_filter

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 16
KILL_GRACE_SECONDS = 5.0


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot start here, and unsandboxed runs were not allowed."""


@dataclass(frozen=True)
class Program:
    """A program to run: `source` becomes main.py; `files` are extra read-only files beside it."""

    source: str
    stdin: str = ""
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.files:
            if name == "main.py" or not name or "/" in name or name.startswith("."):
                raise ValueError(f"file name {name!r} must be a plain name other than main.py")


@functools.cache
def _probe(bwrap: str | None, python: str) -> str | None:
    """None when a trivial program runs in the sandbox, else why it cannot."""
    if bwrap is None:
        return "bwrap was not found on PATH"
    try:
        _syscall_filter()
    except RuntimeError as err:  # no syscall table for this machine: no sandbox rather than a weaker one
        return str(err)
    result = _run_sandboxed(bwrap, python, Program("print('ok')"), Limits(wall_seconds=30.0))
    if result.status is Status.PASSED and result.stdout.strip() == "ok":
        return None
    return f"bwrap failed to start a sandbox ({result.reason}): {result.stderr.strip()[-500:]}"


def sandbox_problem() -> str | None:
    """Why sandboxed runs are impossible on this machine, or None when they work."""
    return _probe(find_bwrap(), interpreter())


def require_sandbox(allow_unsandboxed: bool) -> bool:
    """True to run sandboxed; False to run unsandboxed (only when allowed); raises otherwise."""
    problem = sandbox_problem()
    if problem is None:
        return True
    if not allow_unsandboxed:
        raise SandboxUnavailable(f"{problem}. {INSTALL_HINT}")
    _warn_unsandboxed(problem)
    return False


@functools.cache
def _warn_unsandboxed(problem: str) -> None:
    log.warning("running code WITHOUT a sandbox (%s); only trusted code is safe", problem)


def run_python(
    source: str,
    stdin: str = "",
    *,
    files: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    allow_unsandboxed: bool = False,
) -> RunResult:
    """Run `source` as a Python program (stdlib only) and return how it ended."""
    return run_program(Program(source, stdin, dict(files or {})), limits, allow_unsandboxed)


def run_program(program: Program, limits: Limits | None = None, allow_unsandboxed: bool = False) -> RunResult:
    limits = limits or Limits()
    if require_sandbox(allow_unsandboxed):
        bwrap = find_bwrap()
        assert bwrap is not None  # the probe succeeded
        return _run_sandboxed(bwrap, interpreter(), program, limits)
    return _run_unsandboxed(interpreter(), program, limits)


@functools.cache
def _syscall_filter() -> bytes:
    return build_filter()


def _memfd(name: str, text: str | bytes) -> int:
    fd = os.memfd_create(name, 0)
    data = text.encode() if isinstance(text, str) else text
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _run_sandboxed(
    bwrap: str, python: str, program: Program, limits: Limits, syscall_filter: bool = True
) -> RunResult:
    """`syscall_filter=False` leaves the seccomp filter out: only for tests that show what it denies."""
    contents = {"main.py": program.source, **program.files}
    file_fds = {name: _memfd(name, text) for name, text in contents.items()}
    stdin_fd = _memfd("stdin", program.stdin)
    extra_fds = [_memfd("seccomp", _syscall_filter())] if syscall_filter else []
    info_read, info_write = os.pipe()
    try:
        seccomp_fd = extra_fds[0] if extra_fds else None
        cmd = bwrap_command(bwrap, python, file_fds, limits, info_write, seccomp_fd)
        proc = subprocess.Popen(
            cmd,
            stdin=stdin_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=[*file_fds.values(), *extra_fds, info_write],
            env={"PATH": SANDBOX_PATH},
            start_new_session=True,
        )
    finally:
        for fd in [*file_fds.values(), *extra_fds, stdin_fd, info_write]:
            os.close(fd)
    with os.fdopen(info_read, "rb") as info:
        return _supervise(proc, limits, info, sandboxed=True)


def _run_unsandboxed(python: str, program: Program, limits: Limits) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="tinyseek-run-") as workdir:
        code_dir = os.path.join(workdir, "code")
        os.mkdir(code_dir)
        for name, text in {"main.py": program.source, **program.files}.items():
            with open(os.path.join(code_dir, name), "w") as f:
                f.write(text)
        launcher = launcher_arguments(limits, None, os.path.join(code_dir, "main.py"))
        stdin_fd = _memfd("stdin", program.stdin)
        try:
            proc = subprocess.Popen(
                [python, "-I", "-S", "-c", LAUNCHER_SOURCE, *launcher],
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env={"PATH": SANDBOX_PATH, "HOME": workdir, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        finally:
            os.close(stdin_fd)
        return _supervise(proc, limits, None, sandboxed=False)


def _open_child_pidfd(pid: int, parent: int) -> int | None:
    """A pidfd for `pid` if it is still the child of `parent` (so not a recycled pid)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        status = ""
    if f"\nPPid:\t{parent}\n" not in status:
        os.close(fd)
        return None
    return fd


def _wait_readable(fd: int, timeout: float | None) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


class _Supervision:
    """One run being watched: its output so far, why it was stopped, and its sandbox's init.

    bwrap's outer process may exit as soon as the sandbox's init reports the exit status, while
    the kernel is still killing the rest of the PID namespace; a pidfd on that init (opened while
    it is surely bwrap's child) lets `stop` return only once the namespace is empty.
    """

    def __init__(self, proc: subprocess.Popen[bytes], info: IO[bytes] | None) -> None:
        self.proc = proc
        self.info_stream = info
        self.info = bytearray()
        self.init_pidfd: int | None = None
        self.output: dict[int, bytearray] = {}
        self.overflow: str | None = None
        self.timed_out = False

    def note_info(self, chunk: bytes) -> None:
        self.info += chunk
        if self.init_pidfd is not None:
            return
        try:
            pid = int(json.loads(self.info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return
        self.init_pidfd = _open_child_pidfd(pid, self.proc.pid)

    def read_pending_info(self) -> None:
        stream = self.info_stream
        while stream is not None and self.init_pidfd is None and _wait_readable(stream.fileno(), 0):
            chunk = os.read(stream.fileno(), READ_CHUNK)
            if not chunk:
                break
            self.note_info(chunk)

    def stop(self, kill: bool) -> None:
        """Kill the run if asked; return once every process of the sandbox is gone."""
        self.read_pending_info()
        if kill:
            if self.init_pidfd is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.init_pidfd is not None:
            if not _wait_readable(self.init_pidfd, KILL_GRACE_SECONDS):
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
                _wait_readable(self.init_pidfd, None)
            os.close(self.init_pidfd)


def _supervise(
    proc: subprocess.Popen[bytes], limits: Limits, info: IO[bytes] | None, sandboxed: bool
) -> RunResult:
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    state = _Supervision(proc, info)
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            state.output[fd] = bytearray()
            selector.register(fd, selectors.EVENT_READ)
        if info is not None:
            selector.register(info.fileno(), selectors.EVENT_READ)
        while len(selector.get_map()) > 0 and state.overflow is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state.timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.fd in streams:
                    buf = state.output[key.fd]
                    room = limits.output_bytes - len(buf)
                    buf += chunk[:room]
                    if len(chunk) > room:
                        state.overflow = streams[key.fd]
                        break
                else:
                    state.note_info(chunk)
    if not state.timed_out and state.overflow is None:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            state.timed_out = True
    state.stop(kill=state.timed_out or state.overflow is not None)
    proc.stdout.close()
    proc.stderr.close()
    stdout, stderr = (state.output[fd].decode(errors="replace") for fd in streams)
    status, reason = _classify(proc.returncode, stderr, state, limits, sandboxed)
    return RunResult(status, reason, proc.returncode, stdout, stderr, time.monotonic() - start, sandboxed)


# Last stderr line fragments that show a resource limit stopped the program.
_LIMIT_MESSAGES = (
    ("MemoryError", "memory limit ({memory_bytes} bytes of address space)"),
    ("[Errno 28]", "temp dir full ({tmpfs_bytes} bytes)"),
    ("[Errno 27]", "file size limit ({file_size_bytes} bytes)"),
    ("[Errno 11] Resource temporarily unavailable", "process limit ({max_processes})"),
    ("[Errno 24]", "open files limit ({open_files})"),
)


def _signal_of(returncode: int, sandboxed: bool) -> int | None:
    """bwrap reports a child killed by signal N as exit status 128+N; Popen as -N."""
    if returncode < 0:
        return -returncode
    if sandboxed and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _classify(
    returncode: int, stderr: str, state: _Supervision, limits: Limits, sandboxed: bool
) -> tuple[Status, str]:
    if state.timed_out:
        return Status.TIMEOUT, f"wall-clock limit of {limits.wall_seconds:g} s reached"
    if state.overflow is not None:
        return Status.LIMIT, f"{state.overflow} exceeded {limits.output_bytes} bytes"
    if returncode == 0:
        return Status.PASSED, "exited with status 0"
    sig = _signal_of(returncode, sandboxed)
    if sig == signal.SIGXCPU:
        return Status.TIMEOUT, f"CPU limit of {limits.cpu_seconds} s reached"
    if sig == signal.SIGXFSZ:
        return Status.LIMIT, f"file size limit ({limits.file_size_bytes} bytes)"
    if sig == signal.SIGKILL:
        return Status.LIMIT, "killed by SIGKILL (hard CPU limit or out of memory)"
    if sig is not None:
        return Status.FAILED, f"killed by signal {_signal_name(sig)}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    for fragment, message in _LIMIT_MESSAGES:
        if fragment in last:
            return Status.LIMIT, message.format(**dataclasses.asdict(limits))
    return Status.FAILED, f"exited with status {returncode}" + (f": {last.strip()}" if last else "")
