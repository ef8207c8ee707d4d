"""A seccomp filter for the sandbox, emitted as classic BPF bytes for `bwrap --seccomp FD`.

Why: namespaces and rlimits contain a program's resources, but every system call still reaches the
kernel. The calls below are the kernel attack surface hardened runners close (Docker's default
profile, Firejail, gVisor) and none is needed to run Python code that reads stdin and prints.

Design choices:
- Pure Python (`struct`), no libseccomp: its Python bindings are a Debian package
  (`python3-seccomp`) that a virtual environment cannot import, and the program is only
  45 instructions (44 on aarch64).
- Denied calls return EPERM, so a program sees an ordinary error and the run reports it rather
  than dying by a signal. A call made with another architecture's convention (32-bit `int 0x80` on
  x86-64) kills the process: the syscall numbers below would not mean the same calls there. The x32
  ABI (numbers with bit 30 set) is refused with EPERM.
- `clone` is allowed without namespace flags (threads and fork need it); `clone3` returns ENOSYS,
  because its flags sit in memory a filter cannot read, and glibc then falls back to `clone`.
- `socket`/`socketpair` are allowed for AF_UNIX only (multiprocessing uses it); every other family
  (inet, netlink, packet, vsock, ...) gets EPERM. io_uring is denied too: it can open sockets
  without the `socket` call.
"""

from __future__ import annotations

import errno
import platform
import struct
from collections.abc import Mapping
from dataclasses import dataclass

# seccomp return actions (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
# offsets in struct seccomp_data: int nr, u32 arch, u64 instruction_pointer, u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

AF_UNIX = 1
X32_SYSCALL_BIT = 0x40000000
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = (
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
)

# Denied outright, with why.
DENIED = {
    "ptrace": "inspect or control another process",
    "mount": "change the file system view",
    "umount2": "change the file system view",
    "pivot_root": "change the file system view",
    "open_tree": "new mount API",
    "move_mount": "new mount API",
    "fsopen": "new mount API",
    "fsconfig": "new mount API",
    "fsmount": "new mount API",
    "fspick": "new mount API",
    "mount_setattr": "new mount API",
    "unshare": "new namespaces (a user namespace grants capabilities inside it)",
    "setns": "join another namespace",
    "keyctl": "kernel keyrings (not namespaced)",
    "add_key": "kernel keyrings (not namespaced)",
    "request_key": "kernel keyrings (not namespaced)",
    "bpf": "load programs into the kernel",
    "perf_event_open": "performance counters (side channels, kernel bugs)",
    "kexec_load": "replace the kernel",
    "kexec_file_load": "replace the kernel",
    "reboot": "reboot the machine",
    "init_module": "load kernel modules",
    "finit_module": "load kernel modules",
    "delete_module": "unload kernel modules",
    "userfaultfd": "a tool for kernel race exploits",
    "io_uring_setup": "io_uring reaches sockets and files without the filtered calls",
    "io_uring_enter": "io_uring reaches sockets and files without the filtered calls",
    "io_uring_register": "io_uring reaches sockets and files without the filtered calls",
}


@dataclass(frozen=True)
class Arch:
    """One architecture: its AUDIT_ARCH value, syscall numbers, and whether it has the x32 ABI."""

    name: str
    audit_arch: int
    numbers: Mapping[str, int]
    has_x32: bool = False


_ASM_GENERIC_NEW = {  # numbers shared by x86-64 and the asm-generic table (aarch64, riscv64)
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "clone3": 435,
    "mount_setattr": 442,
}  # fmt: skip

X86_64 = Arch(
    "x86_64",
    0xC000003E,
    {
        "socket": 41, "socketpair": 53, "clone": 56, "ptrace": 101, "pivot_root": 155, "mount": 165,
        "umount2": 166, "reboot": 169, "init_module": 175, "delete_module": 176, "kexec_load": 246,
        "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
        "setns": 308, "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
        **_ASM_GENERIC_NEW,
    },
    has_x32=True,
)  # fmt: skip
AARCH64 = Arch(
    "aarch64",
    0xC00000B7,
    {
        "umount2": 39, "mount": 40, "pivot_root": 41, "kexec_load": 104, "init_module": 105,
        "delete_module": 106, "ptrace": 117, "reboot": 142, "socket": 198, "socketpair": 199,
        "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220, "perf_event_open": 241,
        "setns": 268, "finit_module": 273, "bpf": 280, "userfaultfd": 282, "kexec_file_load": 294,
        "unshare": 97, **_ASM_GENERIC_NEW,
    },
)  # fmt: skip
ARCHES = {"x86_64": X86_64, "amd64": X86_64, "aarch64": AARCH64, "arm64": AARCH64}


def host_arch() -> Arch:
    machine = platform.machine().lower()
    if machine not in ARCHES:
        raise RuntimeError(
            f"no seccomp syscall table for machine {machine!r}; expected one of {', '.join(sorted(ARCHES))}"
        )
    return ARCHES[machine]


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


class _Assembler:
    """Classic BPF with forward jumps to named labels (offsets resolved at the end)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, str | int, str | int]] = []
        self.labels: dict[str, int] = {}

    def emit(self, code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code.append((code, k, jt, jf))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, k, jt, jf) in enumerate(self.code):
            offsets = []
            for target in (jt, jf):
                offset = target if isinstance(target, int) else self.labels[target] - pc - 1
                if not 0 <= offset <= 255:
                    raise ValueError(f"jump of {offset} at instruction {pc}: expected 0..255 (forward only)")
                offsets.append(offset)
            out += _insn(code, k, offsets[0], offsets[1])
        return bytes(out)


def build_filter(arch: Arch | None = None) -> bytes:
    """The filter program (`struct sock_filter[]`, native byte order) that bubblewrap installs."""
    arch = arch or host_arch()
    a = _Assembler()
    a.emit(_LD_W_ABS, _ARCH)
    a.emit(_JEQ_K, arch.audit_arch, 1, 0)
    a.emit(_RET_K, RET_KILL_PROCESS)
    a.emit(_LD_W_ABS, _NR)
    if arch.has_x32:
        a.emit(_JGE_K, X32_SYSCALL_BIT, "deny", 0)
    for name in DENIED:
        a.emit(_JEQ_K, arch.numbers[name], "deny", 0)
    a.emit(_JEQ_K, arch.numbers["clone"], "clone", 0)
    a.emit(_JEQ_K, arch.numbers["clone3"], "enosys", 0)
    a.emit(_JEQ_K, arch.numbers["socket"], "socket", 0)
    a.emit(_JEQ_K, arch.numbers["socketpair"], "socket", 0)
    a.emit(_RET_K, RET_ALLOW)
    a.label("clone")
    a.emit(_LD_W_ABS, _ARG0_LOW)  # flags; the namespace bits are in the low 32
    a.emit(_JSET_K, NAMESPACE_FLAGS, "deny", "allow")
    a.label("socket")
    a.emit(_LD_W_ABS, _ARG0_LOW)  # address family
    a.emit(_JEQ_K, AF_UNIX, "allow", "deny")
    a.label("allow")
    a.emit(_RET_K, RET_ALLOW)
    a.label("deny")
    a.emit(_RET_K, RET_ERRNO | errno.EPERM)
    a.label("enosys")
    a.emit(_RET_K, RET_ERRNO | errno.ENOSYS)
    return a.assemble()


def evaluate(program: bytes, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Run the filter on one call, as the kernel would (for tests of the program itself)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == _LD_W_ABS:
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == _RET_K:
            return k
        elif code in (_JEQ_K, _JGE_K, _JSET_K):
            taken = {_JEQ_K: acc == k, _JGE_K: acc >= k, _JSET_K: bool(acc & k)}[code]
            pc += jt if taken else jf
        else:
            raise ValueError(f"opcode {code:#x} at instruction {pc}: not one this filter uses")
        pc += 1
