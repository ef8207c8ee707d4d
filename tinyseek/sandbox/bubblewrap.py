"""The bubblewrap command line that isolates one Python run.

Isolation, all from bubblewrap (no daemon, no cgroup setup, works in a plain container or VM):
- mounts: /usr and the interpreter's install tree read-only, fresh /proc and /dev, a size-capped
  tmpfs at /tmp as the only writable place (RAM-backed, so disk writes cannot fill the host disk),
  the program's files copied into a read-only /sandbox; nothing else of the host is visible;
- namespaces: own PID (the sandbox's init kills every leftover process when the program exits),
  network (loopback only, so no host service is reachable), IPC, UTS; --die-with-parent;
- environment: cleared, then only PATH, HOME and LANG;
- privileges: as root, bubblewrap keeps only CAP_SETUID/CAP_SETGID so the launcher can switch to a
  throwaway uid (root is exempt from RLIMIT_NPROC); as a normal user, a user namespace is used and
  further user namespaces are disabled;
- system calls: a seccomp filter (tinyseek.sandbox.seccomp, passed as `--seccomp FD`) denies ptrace,
  mounts, new namespaces, keyrings, bpf, perf events, kexec/reboot/modules, io_uring and every
  socket family but AF_UNIX. bubblewrap installs it just before running the launcher.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from tinyseek.sandbox.limits import Limits

INSTALL_HINT = (
    "bubblewrap (bwrap) is needed to run untrusted code: install it with "
    "`apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` (Fedora) or "
    "`pacman -S bubblewrap` (Arch); pass allow_unsandboxed=True only for trusted code"
)
SANDBOX_DIR = "/sandbox"
WORK_DIR = "/tmp"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
LAUNCHER_SOURCE = (Path(__file__).with_name("launcher.py")).read_text()
# Throwaway uids for privileged runs: far above real accounts; one drawn per run so that
# concurrent runs never share an RLIMIT_NPROC budget.
SANDBOX_UID_RANGE = (2_000_000_000, 2_100_000_000)
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def interpreter() -> str:
    """The real interpreter binary behind this process (a venv's python is a symlink)."""
    return os.path.realpath(sys.executable)


def interpreter_root(python: str) -> str:
    """The install tree holding the interpreter and its standard library (`<root>/bin/python`)."""
    return os.path.dirname(os.path.dirname(python))


def launcher_arguments(limits: Limits, uid: int | None, main: str) -> list[str]:
    """The launcher's command-line arguments (see launcher.py for their order)."""
    numbers = (
        limits.cpu_seconds,
        limits.memory_bytes,
        limits.max_processes,
        limits.file_size_bytes,
        limits.open_files,
    )
    return [main, "-" if uid is None else str(uid), *(str(int(n)) for n in numbers)]


def new_sandbox_uid() -> int:
    low, high = SANDBOX_UID_RANGE
    return low + secrets.randbelow(high - low)


def _system_mounts(python: str) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in TOP_LEVEL_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    root = interpreter_root(python)
    if root != "/usr" and not root.startswith("/usr/"):
        # bwrap would create the missing parents with the host's modes (e.g. /root is 0700),
        # which the unprivileged uid could not traverse.
        parents = list(reversed(Path(root).parents))[1:]
        for parent in parents:
            args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", root, root]
    return args


def bwrap_command(
    bwrap: str,
    python: str,
    file_fds: dict[str, int],
    limits: Limits,
    info_fd: int,
    seccomp_fd: int | None = None,
) -> list[str]:
    """Command line running `<SANDBOX_DIR>/main.py` under the launcher; `file_fds` maps each file
    name in SANDBOX_DIR to a readable fd with its contents (bwrap copies them in); `seccomp_fd`
    holds the compiled seccomp filter (None runs without one, for tests that show its effect)."""
    privileged = os.geteuid() == 0
    args = [bwrap, "--die-with-parent", "--new-session"]
    args += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if privileged:
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns", "--uid", "65534", "--gid", "65534"]
    args += _system_mounts(python)
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(limits.tmpfs_bytes), "--tmpfs", WORK_DIR]
    args += ["--dir", SANDBOX_DIR]
    for name, fd in file_fds.items():
        args += ["--perms", "0444", "--ro-bind-data", str(fd), f"{SANDBOX_DIR}/{name}"]
    args += ["--clearenv", "--setenv", "PATH", SANDBOX_PATH, "--setenv", "HOME", WORK_DIR]
    args += ["--setenv", "LANG", "C.UTF-8", "--chdir", WORK_DIR, "--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    uid = new_sandbox_uid() if privileged else None
    launcher = launcher_arguments(limits, uid, f"{SANDBOX_DIR}/main.py")
    return [*args, "--", python, "-I", "-S", "-c", LAUNCHER_SOURCE, *launcher]
