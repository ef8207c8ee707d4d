"""The sandbox's seccomp filter: each denied call is tried INSIDE the sandbox (a Python program calling
it through ctypes and printing the errno), the calls programs need still work, and the BPF program
itself is checked by evaluating it the way the kernel does.
"""

from __future__ import annotations

import errno
import os

import pytest

from tinyseek.sandbox import Limits, Program, run_python, sandbox_problem
from tinyseek.sandbox.bubblewrap import find_bwrap, interpreter
from tinyseek.sandbox.runner import _run_sandboxed
from tinyseek.sandbox.seccomp import (
    AARCH64,
    DENIED,
    NAMESPACE_FLAGS,
    RET_ALLOW,
    RET_ERRNO,
    RET_KILL_PROCESS,
    X86_64,
    Arch,
    build_filter,
    evaluate,
    host_arch,
)

needs_sandbox = pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox: {sandbox_problem()}")
LIMITS = Limits(wall_seconds=10.0, cpu_seconds=5)

# Tries one call through libc's syscall(2) and prints "<return value> <errno>". A clone that
# succeeds returns 0 in a child that shares nothing it needs, so the child exits at once.
PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {numbers}
SIGCHLD = 17
zeros = ctypes.create_string_buffer(256)
name = sys.stdin.read().strip()
call, _, arg = name.partition(":")
if call == "clone":
    args = [int(arg, 0) | SIGCHLD, 0, 0, 0, 0]
elif call in ("socket", "socketpair"):
    pair = (ctypes.c_int * 2)()
    args = [int(arg), 1, 0] + ([pair] if call == "socketpair" else [])
else:
    ns = os.open("/proc/self/ns/uts", os.O_RDONLY)
    args = {{
        "ptrace": [0, 0, 0, 0],
        "mount": [b"none", b"/tmp", b"tmpfs", 0, None],
        "umount2": [b"/tmp", 0],
        "pivot_root": [b"/tmp", b"/tmp"],
        "unshare": [0x10000000],
        "setns": [ns, 0],
        "keyctl": [0, -3, 1],
        "add_key": [b"user", b"tinyseek", b"v", 1, -2],
        "request_key": [b"user", b"tinyseek", None, 0],
        "bpf": [5, zeros, 128],
        "perf_event_open": [zeros, 0, -1, -1, 0],
        "kexec_load": [0, 0, None, 0],
        "kexec_file_load": [-1, -1, 0, None, 0],
        "reboot": [0, 0, 0, None],
        "init_module": [zeros, 0, b""],
        "finit_module": [-1, b"", 0],
        "delete_module": [b"tinyseek_none", 0],
        "userfaultfd": [0],
        "io_uring_setup": [1, zeros],
        "clone3": [zeros, 88],
    }}.get(call, [0, 0, 0, 0, 0])
ctypes.set_errno(0)
ret = libc.syscall(NR[call], *args)
if call in ("clone", "clone3") and ret == 0:
    os._exit(0)
if call in ("clone", "clone3") and ret > 0:
    os.waitpid(ret, 0)
print(ret, ctypes.get_errno())
"""

# One probe per denied behaviour: a call name, or call:argument for clone flags and socket families.
DENIED_PROBES = [
    *sorted(
        n for n in DENIED if not n.startswith(("open_tree", "move_mount", "fs", "io_uring_e", "io_uring_r"))
    ),
    "clone:0x10000000",  # CLONE_NEWUSER
    "clone:0x00020000",  # CLONE_NEWNS
    "clone:0x40000000",  # CLONE_NEWNET
    "clone:0x20000000",  # CLONE_NEWPID
    "clone:0x08000000",  # CLONE_NEWIPC
    "clone:0x04000000",  # CLONE_NEWUTS
    "clone:0x02000000",  # CLONE_NEWCGROUP
    "socket:2",  # AF_INET
    "socket:10",  # AF_INET6
    "socket:16",  # AF_NETLINK
    "socket:17",  # AF_PACKET
    "socket:40",  # AF_VSOCK
    "socketpair:2",
]


def probe(call: str, syscall_filter: bool = True) -> tuple[int, int]:
    """(return value, errno) of one call made inside the sandbox."""
    numbers = dict(host_arch().numbers)
    program = Program(PROBE.format(numbers=numbers), stdin=call)
    bwrap = find_bwrap()
    assert bwrap is not None
    result = _run_sandboxed(bwrap, interpreter(), program, LIMITS, syscall_filter=syscall_filter)
    assert result.returncode == 0, (result.reason, result.stderr)
    ret, err = result.stdout.split()
    return int(ret), int(err)


@needs_sandbox
@pytest.mark.parametrize("call", DENIED_PROBES)
def test_denied_call_gets_eperm_inside_the_sandbox(call: str) -> None:
    assert probe(call) == (-1, errno.EPERM)


@needs_sandbox
def test_clone3_says_enosys_so_libc_falls_back_to_clone() -> None:
    assert probe("clone3") == (-1, errno.ENOSYS)


# Calls that succeed without the filter in this sandbox (measured on the CI kind of host): the filter,
# not a missing capability, is what stops them. As root the sandbox keeps CAP_SETUID, and there a
# program could create a user namespace (and gain every capability inside it) without the filter.
UNFILTERED_SUCCESS = ["ptrace", "keyctl", "add_key", "socket:2", "socket:10"]
if os.geteuid() == 0:
    UNFILTERED_SUCCESS += ["unshare", "clone:0x10000000"]


@needs_sandbox
@pytest.mark.parametrize("call", UNFILTERED_SUCCESS)
def test_without_the_filter_the_same_call_succeeds(call: str) -> None:
    ret, err = probe(call, syscall_filter=False)
    assert ret >= 0 and err == 0, (ret, err)


@needs_sandbox
def test_what_programs_need_still_works() -> None:
    source = """
import os, socket, subprocess, threading, multiprocessing
a, b = socket.socketpair(socket.AF_UNIX)
a.sendall(b"unix"); print(b.recv(4).decode())
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
t = threading.Thread(target=print, args=("thread",)); t.start(); t.join()
print(subprocess.run(["/bin/echo", "subprocess"], capture_output=True, text=True).stdout.strip())
ctx = multiprocessing.get_context("fork")
parent, child = ctx.Pipe()
worker = ctx.Process(target=lambda: child.send(sum(map(abs, [-1, -2, 3]))))
worker.start(); print("process", parent.recv()); worker.join()
"""
    result = run_python(source, limits=LIMITS)
    assert result.stdout.split("\n")[:5] == ["unix", "fork 7", "thread", "subprocess", "process 6"], result


@pytest.mark.parametrize("arch", [X86_64, AARCH64], ids=lambda a: a.name)
def test_filter_program_decisions(arch: Arch) -> None:
    program = build_filter(arch)
    assert len(program) % 8 == 0 and len(program) // 8 < 100
    eperm = RET_ERRNO | errno.EPERM
    nr = arch.numbers
    for name in DENIED:
        assert evaluate(program, arch.audit_arch, nr[name]) == eperm, name
    assert evaluate(program, arch.audit_arch, 0) == RET_ALLOW  # read / io_setup
    assert evaluate(program, arch.audit_arch, nr["clone"], (0x003D0F00 | 17,)) == RET_ALLOW  # threads
    for bit in range(32):
        flag = 1 << bit
        expected = eperm if flag & NAMESPACE_FLAGS else RET_ALLOW
        assert evaluate(program, arch.audit_arch, nr["clone"], (flag,)) == expected, hex(flag)
    assert evaluate(program, arch.audit_arch, nr["clone3"]) == RET_ERRNO | errno.ENOSYS
    assert evaluate(program, arch.audit_arch, nr["socket"], (1, 1, 0)) == RET_ALLOW
    for family in (0, 2, 10, 16, 17, 40):
        assert evaluate(program, arch.audit_arch, nr["socket"], (family,)) == eperm, family
    assert evaluate(program, 0x40000003, nr["socket"], (1,)) == RET_KILL_PROCESS  # i386 int 0x80
    if arch.has_x32:
        assert evaluate(program, arch.audit_arch, 0x40000000 | 41, (1,)) == eperm


def test_x86_64_numbers_match_the_kernel_headers() -> None:
    header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
    if not os.path.exists(header):
        pytest.skip(f"{header} not installed")
    defined = {}
    with open(header) as lines:
        rows = [line.split() for line in lines]
    for parts in rows:
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
            defined[parts[1][5:]] = int(parts[2])
    assert {name: defined[name] for name in X86_64.numbers} == dict(X86_64.numbers)


def test_unknown_machine_means_no_sandbox_rather_than_no_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyseek.sandbox import runner

    monkeypatch.setattr("platform.machine", lambda: "sparc64")
    runner._syscall_filter.cache_clear()
    runner._probe.cache_clear()
    try:
        assert "sparc64" in (runner._probe("/usr/bin/bwrap", interpreter()) or "")
    finally:
        runner._syscall_filter.cache_clear()
        runner._probe.cache_clear()
