"""The sandbox contains hostile programs: each attack ends without reward and the host is unchanged.

Limits are tight (1 s of CPU, 2 s of wall clock) so the suite stays fast on two cores.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tinyseek.sandbox import (
    FunctionTests,
    Limits,
    Program,
    SandboxPool,
    SandboxUnavailable,
    Status,
    run_function_tests,
    run_python,
    sandbox_problem,
)
from tinyseek.sandbox.bubblewrap import SANDBOX_UID_RANGE
from tinyseek.tasks.coding import CodingTask

pytestmark = pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox: {sandbox_problem()}")

MiB = 1 << 20
LIMITS = Limits(
    wall_seconds=2.0,
    cpu_seconds=1,
    memory_bytes=256 * MiB,
    max_processes=16,
    file_size_bytes=16 * MiB,
    open_files=32,
    output_bytes=1 * MiB,
    tmpfs_bytes=16 * MiB,
)
PROJECT_FILE = Path(__file__).resolve().parents[1] / "pyproject.toml"


def sandbox_processes() -> list[int]:
    """Host pids still running under a throwaway sandbox uid (privileged mode only)."""
    low, high = SANDBOX_UID_RANGE
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid_line = next(
                line for line in (entry / "status").read_text().splitlines() if line.startswith("Uid:")
            )
        except (OSError, StopIteration):
            continue
        if low <= int(uid_line.split()[1]) < high:
            found.append(int(entry.name))
    return found


def processes_with_argument(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if tag.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host_checks():
    """Whatever the program did, afterwards no sandbox process survives and the host can fork."""
    before = digest(PROJECT_FILE)
    yield
    assert sandbox_processes() == []
    assert subprocess.run(["true"]).returncode == 0
    assert digest(PROJECT_FILE) == before


def test_trivial_program_passes_with_stdin_and_files():
    files = {"data.txt": "xyz"}
    result = run_python("print(open('/sandbox/data.txt').read() + input())", "ab", files=files, limits=LIMITS)
    assert result.status is Status.PASSED, result.stderr
    assert result.stdout == "xyzab\n"
    assert result.sandboxed and result.returncode == 0


def test_infinite_loop_times_out(host_checks):
    result = run_python("while True:\n    pass\n", limits=LIMITS)
    assert result.status is Status.TIMEOUT
    assert result.duration < LIMITS.wall_seconds + 1.0


def test_sleeping_program_hits_wall_clock(host_checks):
    start = time.monotonic()
    result = run_python("import time\ntime.sleep(60)\n", limits=LIMITS)
    assert result.status is Status.TIMEOUT and "wall-clock" in result.reason
    assert time.monotonic() - start < LIMITS.wall_seconds + 1.0


def test_fork_bomb_is_contained(host_checks):
    source = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result = run_python(source, limits=LIMITS)
    assert result.status is Status.TIMEOUT
    counted = run_python(
        "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5)\n"
        "        n += 1\nexcept OSError:\n    print(n)\n",
        limits=LIMITS,
    )
    assert counted.status is Status.PASSED, counted.stderr
    assert 0 < int(counted.stdout) < LIMITS.max_processes


def test_allocating_10_gib_hits_memory_limit(host_checks):
    result = run_python("x = bytearray(10 * 2**30)\nprint(len(x))\n", limits=LIMITS)
    assert result.status is Status.LIMIT and "memory" in result.reason
    grown = run_python("xs = []\nwhile True:\n    xs.append(bytearray(2**20))\n", limits=LIMITS)
    assert grown.status is Status.LIMIT and "memory" in grown.reason


def test_writing_1_gib_to_disk_is_stopped(host_checks):
    source = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(bytes(2**20))\n"
    assert run_python(source, limits=LIMITS).status is Status.LIMIT
    many_files = (
        "for i in range(64):\n    with open(f'part{i}', 'wb') as f:\n        f.write(bytes(15 * 2**20))\n"
    )
    result = run_python(many_files, limits=LIMITS)
    assert result.status is Status.LIMIT and "temp dir full" in result.reason


def test_writing_outside_the_temp_dir_fails(host_checks):
    targets = [str(PROJECT_FILE), "/usr/lib/tinyseek-escape", "/sandbox/main.py", "/tinyseek-escape"]
    source = (
        f"targets = {targets!r}\nwritten = []\nfor t in targets:\n    try:\n        with open(t, 'a') as f:\n"
        "            f.write('pwned')\n        written.append(t)\n    except OSError:\n        pass\n"
        "open('/tmp/ok', 'w').write('fine')\nprint(written)\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status is Status.PASSED, result.stderr
    assert result.stdout.strip() == "[]"
    assert not Path("/usr/lib/tinyseek-escape").exists()


def test_parent_environment_secret_is_invisible(host_checks, monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("TINYSEEK_TEST_SECRET", secret)
    source = (
        "import os, glob\nprint(dict(os.environ))\n"
        "for path in glob.glob('/proc/*/environ'):\n    try:\n        print(open(path, 'rb').read())\n"
        "    except OSError as e:\n        print(path, e)\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status is Status.PASSED, result.stderr
    assert secret not in result.stdout + result.stderr
    assert "TINYSEEK_TEST_SECRET" not in result.stdout


def test_no_network_to_a_local_server(host_checks):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.3)
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
        result = run_python(source, limits=LIMITS)
        # The seccomp filter refuses an AF_INET socket outright (before it, the empty network
        # namespace refused the connection).
        assert result.status is Status.FAILED and "Operation not permitted" in result.reason
        with pytest.raises(TimeoutError):
            server.accept()


def test_killing_the_parent_fails(host_checks):
    sentinel = subprocess.Popen(["sleep", "30"])
    try:
        source = (
            "import os, signal\n"
            "for pid in (os.getppid(), 1, -1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n        pass\n"
            f"os.kill({os.getpid()}, signal.SIGKILL)\n"
        )
        result = run_python(source, limits=LIMITS)
        assert result.status is Status.FAILED and "ProcessLookupError" in result.reason
        assert sentinel.poll() is None
    finally:
        sentinel.kill()
        sentinel.wait()


def test_printing_100_mb_is_cut_at_the_output_cap(host_checks):
    result = run_python("import sys\nsys.stdout.write('x' * 100_000_000)\n", limits=LIMITS)
    assert result.status is Status.LIMIT and "stdout exceeded" in result.reason
    assert len(result.stdout) == LIMITS.output_bytes


def test_abort_through_ctypes_is_a_failure(host_checks):
    result = run_python("import ctypes\nctypes.CDLL(None).abort()\n", limits=LIMITS)
    assert result.status is Status.FAILED and "SIGABRT" in result.reason


def test_no_background_process_survives(host_checks):
    tag = f"{time.time_ns() % 10**6 + 1000}.123"
    source = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sleep', '{tag}'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(30)\n"
        "print('started')\n"
    )
    result = run_python(source, limits=LIMITS)
    assert result.status is Status.PASSED and result.stdout.strip() == "started"
    assert processes_with_argument(tag) == []


ATTACKS = {
    "infinite loop": "while True:\n        pass",
    "fork bomb": "import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass",
    "10 GiB": "return len(bytearray(10 * 2**30))",
    "1 GiB disk": "f = open('big', 'wb')\n    for _ in range(1024):\n        f.write(bytes(2**20))",
    "write project file": f"open({str(PROJECT_FILE)!r}, 'a').write('x')",
    "read secret": "import os\n    return os.environ['TINYSEEK_TEST_SECRET']",
    "socket": "import socket\n    socket.create_connection(('127.0.0.1', PORT), timeout=1)",
    "kill parent": f"import os\n    os.kill({os.getpid()}, 9)",
    "print 100 MB": "print('x' * 100_000_000)",
    "abort": "import ctypes\n    ctypes.CDLL(None).abort()",
    "background process": "import subprocess\n    subprocess.Popen(['sleep', '77.5'], start_new_session=True)",
}


def test_every_attack_scores_zero_as_a_coding_answer(host_checks, monkeypatch):
    monkeypatch.setenv("TINYSEEK_TEST_SECRET", "hunter2")
    task = CodingTask(limits=LIMITS, per_test_seconds=0.5, workers=2)
    problem = task.build("count_multiples", {"a": 3, "b": 5})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.3)
        port = str(server.getsockname()[1])
        completions = [
            f"```python\ndef count_multiples(lo, hi):\n    {body.replace('PORT', port)}\n```"
            for body in ATTACKS.values()
        ]
        scores = task.score_many([problem] * len(completions), completions)
        with pytest.raises(TimeoutError):
            server.accept()
    assert dict(zip(ATTACKS, scores, strict=True)) == dict.fromkeys(ATTACKS, 0.0)
    assert processes_with_argument("77.5") == []


def test_function_tests_report_each_call():
    source = "def f(a, b):\n    print('noise')\n    if a == 3:\n        while True:\n            pass\n    if a == 4:\n        raise ValueError('four')\n    return a + b\n"
    job = FunctionTests(source, "f", [[1, 2], [3, 0], [4, 0], [5, 5]], per_test_seconds=0.2)
    run = run_function_tests(job, LIMITS)
    assert run.run.status is Status.PASSED
    assert [o.value for o in run.outcomes if o] == [3, None, None, 10]
    assert "ValueError: four" in (run.outcomes[2].error or "")
    assert run.passed([3, 3, 4, 10]) == [True, False, False, True]
    assert run.passed([3, 3, 4, True]) == [True, False, False, False]  # 10 is not True


def test_forged_result_lines_do_not_help():
    source = 'import os\nos.write(1, b\'{"i": 0, "value": 42}\\n\')\ndef f(x):\n    return x\n'
    run = run_function_tests(FunctionTests(source, "f", [[1]]), LIMITS)
    assert run.passed([42]) == [False]
    assert run.passed([1]) == [True]


def test_crash_keeps_results_of_earlier_tests():
    source = "import os\ndef f(x):\n    if x == 2:\n        os.abort()\n    return x\n"
    run = run_function_tests(FunctionTests(source, "f", [[0], [1], [2], [3]]), LIMITS)
    assert run.run.status is Status.FAILED
    assert run.passed([0, 1, 2, 3]) == [True, True, False, False]


def test_pool_runs_programs_in_parallel_and_in_order():
    programs = [Program(f"import time\ntime.sleep(0.5)\nprint({i})") for i in range(4)]
    with SandboxPool(workers=4, limits=LIMITS) as pool:
        start = time.monotonic()
        results = pool.run_programs(programs)
        elapsed = time.monotonic() - start
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert elapsed < 4 * 0.5


def test_missing_bubblewrap_refuses_with_install_hint(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        run_python("print(1)", limits=LIMITS)
    with pytest.raises(SandboxUnavailable):
        SandboxPool(workers=1)
    result = run_python("import os\nprint(sorted(os.environ))", limits=LIMITS, allow_unsandboxed=True)
    assert result.status is Status.PASSED and not result.sandboxed
    assert result.stdout.strip() == "['HOME', 'LANG', 'PATH']"


def test_bad_limits_and_names_are_rejected():
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=0)
    with pytest.raises(ValueError, match="plain name"):
        Program("print(1)", files={"../x.py": ""})
    with pytest.raises(ValueError, match="identifier"):
        FunctionTests("", "not a name", [])


def test_ignoring_sigxcpu_still_ends_the_run():
    """The soft CPU limit sends SIGXCPU; a program that ignores it meets the hard limit or the wall clock."""
    result = run_python(
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n", limits=LIMITS
    )
    assert result.status in (Status.TIMEOUT, Status.LIMIT)
    assert result.returncode is not None and result.returncode != 0
    assert result.duration < LIMITS.wall_seconds + 1.0
