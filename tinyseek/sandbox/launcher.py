"""First code that runs inside the sandbox: apply rlimits, drop privileges, then run the program.

This file is not imported by tinyseek; its text is passed to `python -I -S -c` inside the sandbox
with one JSON argument {"limits": {...}, "uid": int | null, "main": path}. It runs before any
untrusted code, so it may rely on nothing but the standard library.

- RLIMIT_NPROC only binds processes whose real uid is not root: when the sandbox starts as root
  (privileged bubblewrap), the launcher switches to the given throwaway uid after setting limits,
  so a fork bomb meets the limit. The uid is unique per run, so runs never share a process budget.
- no_new_privs stops setuid binaries from regaining privileges; the process is made non-dumpable
  so a crash writes no core file and other processes of the same uid cannot ptrace it.
- The program runs in this same interpreter through runpy (one interpreter start per run).
"""

import ctypes
import json
import os
import resource
import runpy
import sys

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


def apply_limits(limits: dict) -> None:
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
        raise SystemExit(f"sandbox launcher: could not switch to uid {uid}")


def main() -> None:
    config = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("sandbox launcher: prctl(PR_SET_NO_NEW_PRIVS) failed")
    apply_limits(config["limits"])
    if config["uid"] is not None:
        drop_privileges(config["uid"])
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    sys.argv = [config["main"]]
    runpy.run_path(config["main"], run_name="__main__")


main()
