"""`tinyseek serve` in its own process, a /health watcher, and a reader of the server's own counts.

The fuzzing tests run the server as a user does (a subprocess: it does not share the fuzzer's GIL, so
a /health latency is the server's, not the test's), watch /health from a thread every 20 ms for the
whole run, and cross-check the client's view of 5xx answers with the server's Prometheus counters.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.serve_harness import free_port

HEALTH_PERIOD = 0.02


class ServerProcess:
    """`python -m tinyseek serve` on a free loopback port; its log goes to a file (a full pipe would
    block the server)."""

    def __init__(self, model_dir: Path, log_file: Path, key: str, *extra: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.baseline: dict[tuple[str, str], float] = {}
        command = [
            sys.executable, "-m", "tinyseek", "serve", "--model", str(model_dir), "--port", str(self.port),
            "--served-model-name", "tiny-r1", "--api-key", key, *extra,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(log_file, "w") as log:
            self.process = subprocess.Popen(
                command, cwd=Path(__file__).parents[1], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log_file.read_text()[-3000:]
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    self.baseline = self.counts()  # the 503s of /health while loading are not failures
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server on {self.base_url} not healthy after 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def counts(self) -> dict[tuple[str, str], float]:
        """The server's `tinyseek_requests_total` by (route, status)."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        found = {}
        for route, status, value in re.findall(
            r'^tinyseek_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)$', text, re.MULTILINE
        ):
            found[(route, status)] = float(value)
        return found

    def new_counts(self) -> dict[tuple[str, str], float]:
        """Requests counted since the server became ready, by (route, status)."""
        counts = self.counts()
        return {k: v - self.baseline.get(k, 0.0) for k, v in counts.items() if v > self.baseline.get(k, 0.0)}

    def server_errors(self) -> float:
        return sum(v for (_, status), v in self.new_counts().items() if status.startswith("5"))

    def gauge(self, name: str) -> float:
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))


# Runs in its own interpreter, so the latencies it measures are the server's, not the wait of a
# thread for the GIL of a busy test process. One line per poll: "<latency seconds> <status or error>".
_WATCH_SOURCE = """
import sys, time, httpx
url, period = sys.argv[1], float(sys.argv[2])
with httpx.Client(timeout=5) as client:
    while True:
        start = time.perf_counter()
        try:
            status = str(client.get(url).status_code)
        except httpx.HTTPError as err:
            status = type(err).__name__
        print(f"{time.perf_counter() - start:.6f} {status}", flush=True)
        time.sleep(period)
"""


class HealthWatch:
    """Polls /health every 20 ms from another process; records each answer's latency and status."""

    def __init__(self, base_url: str) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._process = subprocess.Popen(
            [sys.executable, "-c", _WATCH_SOURCE, f"{base_url}/health", str(HEALTH_PERIOD)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            latency, status = line.split()
            self.latencies.append(float(latency))
            if status != "200":
                self.failures.append(status)

    def mark(self) -> int:
        """Polls so far; `worst_since(mark)` looks only at later ones."""
        return len(self.latencies)

    def worst_since(self, mark: int) -> float:
        time.sleep(2 * HEALTH_PERIOD)  # let the last poll in flight report
        return max(self.latencies[mark:], default=0.0)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._thread.join(timeout=10)
