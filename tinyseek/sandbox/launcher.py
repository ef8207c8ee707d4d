"""First code that runs inside the sandbox: apply rlimits, drop privileges, then run the program.

This file is not imported by tinyseek; its text is passed to `python -I -S -c` inside the sandbox
with the arguments `MAIN UID CPU_SECONDS MEMORY_BYTES MAX_PROCESSES FILE_SIZE_BYTES OPEN_FILES`
(UID is "-" to keep the current one). It runs before any untrusted code, and every sandboxed run
pays its start-up, so it imports only builtin modules and `resource`.

- RLIMIT_NPROC only binds processes whose real uid is not root: when the sandbox starts as root
  (privileged bubblewrap), the launcher switches to the given throwaway uid after setting limits,
  so a fork bomb meets the limit; the uid is unique per run, so runs never share a process budget.
  The uid switch also makes the process non-dumpable. bubblewrap has already set no_new_privs,
  so setuid binaries cannot regain privileges.
- The program runs in this same interpreter as a fresh __main__ module (one interpreter start
  per run); the launcher's own names are not reachable from it.
"""

import posix
import resource
import sys


def apply_limits(cpu: int, memory: int, processes: int, file_size: int, open_files: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def drop_privileges(uid: int) -> None:
    posix.setgroups([])
    posix.setresgid(uid, uid, uid)
    posix.setresuid(uid, uid, uid)
    if posix.getresuid() != (uid, uid, uid) or posix.getresgid() != (uid, uid, uid):
        raise SystemExit(f"sandbox launcher: could not switch to uid {uid}")


def run_main(path: str) -> None:
    with open(path) as f:
        code = compile(f.read(), path, "exec")
    module = type(sys)("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    sys.argv = [path]
    exec(code, module.__dict__)


def main() -> None:
    path, uid, *limits = sys.argv[1:]
    apply_limits(*(int(x) for x in limits))
    if uid != "-":
        drop_privileges(int(uid))
    run_main(path)


main()
