"""Test harness for the server: the real server on a loopback port, in a thread of the test process.

The model it serves in the tests is tests/fixtures.py's `chat_model_dir`."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tinyseek.serve.app import DrainingServer, make_server
from tinyseek.serve.state import ServerSettings, ServerState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """The real uvicorn server in a thread of the test process; `stop()` shuts it down."""

    def __init__(self, settings: ServerSettings, drain_timeout: float = 5.0, wait: bool = True) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.server: DrainingServer = make_server(settings, "127.0.0.1", self.port, drain_timeout)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        if wait:
            self.wait_ready()
        else:
            self.wait_listening()

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on {self.base_url} not listening after {timeout}s")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server on {self.base_url} not healthy after {timeout}s")

    @property
    def state(self) -> ServerState:
        return self.server.state

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
