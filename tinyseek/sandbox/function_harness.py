"""Test harness that runs inside the sandbox: call one function of solution.py on each input.

Not imported by tinyseek; runner passes its text as main.py. The request comes on stdin as JSON
{"function": name, "inputs": [[arg, ...], ...], "per_test_seconds": s}. For each input the
harness writes one JSON line {"i": k, "value": v} or {"i": k, "error": "..."} to a private copy
of stdout, flushed at once so results survive a later crash or kill; the program's own prints go
to stderr. Expected values never enter the sandbox: the caller compares, so printing forged
result lines gains nothing.
"""

import json
import os
import signal
import sys
from typing import IO, Any


class TestTimeout(Exception):
    """Raised by SIGALRM when one call runs past per_test_seconds."""


def on_alarm(signum: int, frame: Any) -> None:
    raise TestTimeout("time limit per test reached")


def emit(results: IO[str], line: dict[str, Any]) -> None:
    try:
        text = json.dumps(line)
    except (TypeError, ValueError):
        text = json.dumps({"i": line["i"], "error": "return value is not JSON-serializable"})
    results.write(text + "\n")
    results.flush()


def main() -> None:
    request = json.loads(sys.stdin.read())
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "solution.py")
    with open(path) as f:
        code = compile(f.read(), "solution.py", "exec")
    namespace = {"__name__": "solution"}
    exec(code, namespace)
    function = namespace.get(request["function"])
    if not callable(function):
        raise SystemExit(f"solution.py defines no function {request['function']!r}")
    signal.signal(signal.SIGALRM, on_alarm)
    for i, args in enumerate(request["inputs"]):
        signal.setitimer(signal.ITIMER_REAL, request["per_test_seconds"])
        try:
            line = {"i": i, "value": function(*args)}
        except Exception as e:
            line = {"i": i, "error": f"{type(e).__name__}: {e}"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        emit(results, line)


main()
