"""`tinyseek serve` as a user runs it: a subprocess with a key from the environment, a queue limit, a
server-wide reasoning budget, and SIGTERM while a stream is in flight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.fixtures import chat_model_dir
from tests.serve_harness import free_port

KEY = "sk-from-env"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = [{"role": "user", "content": "What is 3 + 4?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    model_dir = chat_model_dir(tmp_path_factory.mktemp("tiny-r1"))
    port = free_port()
    command = [
        sys.executable, "-m", "tinyseek", "serve", "--model", str(model_dir), "--port", str(port),
        "--served-model-name", "tiny", "--max-queue", "1", "--max-reasoning-tokens", "2", "--drain-timeout", "20",
    ]  # fmt: skip
    env = {**os.environ, "TINYSEEK_API_KEY": KEY}
    process = subprocess.Popen(
        command,
        cwd=Path(__file__).parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    seen: set[tuple[int, str]] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{base}/health", timeout=1)
            seen.add((health.status_code, health.json()["status"]))
            if health.status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.1)
    assert seen <= {(503, "loading"), (200, "ok")}, seen
    yield base, process
    if process.poll() is None:
        process.kill()
        process.wait()


def chat(base: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "tiny", "messages": QUESTION, **body},
        headers=AUTH,
        timeout=60,
    )


def test_key_from_environment_and_server_default_budget(served: tuple) -> None:
    base, _ = served
    assert chat(base, max_tokens=4).status_code == 200
    denied = httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": QUESTION})
    assert denied.status_code == 401
    answered = 0
    for seed in range(6):
        reply = chat(base, max_tokens=4, seed=seed).json()
        assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] <= 2
        answered += bool(reply["choices"][0]["message"]["content"])
    assert answered >= 3


def test_full_queue_gets_429_then_sigterm_drains_the_stream_and_exits_cleanly(served: tuple) -> None:
    base, process = served
    seed = next(
        s for s in range(64) if chat(base, max_tokens=120, seed=s).json()["usage"]["completion_tokens"] > 100
    )
    body = {"model": "tiny", "messages": QUESTION, "max_tokens": 120, "seed": seed, "stream": True}
    events = []
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as stream:
        lines = stream.iter_lines()
        events.append(next(lines))
        busy = chat(base, max_tokens=2)
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "queue_full"
        process.send_signal(signal.SIGTERM)
        events += [line for line in lines if line]
    assert events[-1] == "data: [DONE]"
    finishes = [
        json.loads(e[6:])["choices"][0].get("finish_reason") for e in events[:-1] if '"choices": [{' in e
    ]
    assert finishes[-1] in ("stop", "length"), "the in-flight stream must finish, not be cut"
    assert process.wait(timeout=30) == 0


@pytest.mark.slow
def test_compiled_server_answers_as_the_eager_one(tmp_path: Path) -> None:
    """`tinyseek serve --compile` compiles while loading (/health turns ready after it), then answers
    greedy chat completions, over HTTP with the openai client, exactly as a server without it."""
    from openai import OpenAI

    from tests.serve_process import ServerProcess

    model_dir = chat_model_dir(tmp_path / "model")
    replies = []
    for extra in ((), ("--compile",)):
        server = ServerProcess(model_dir, tmp_path / f"server{len(extra)}.log", KEY, *extra)
        try:
            client = OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0)
            replies.append([
                client.chat.completions.create(
                    model="tiny-r1", messages=QUESTION, temperature=0, max_tokens=24, n=n
                ).model_dump()["choices"]
                for n in (1, 3)  # the compiled graphs for one row and for several
            ])  # fmt: skip
        finally:
            server.stop()
    eager, compiled = replies
    assert compiled == eager
    if torch.backends.cpu.get_cpu_capability() == "AVX512":  # the kernels' CPUs (cpu_kernels.usable)
        assert "CPU decode kernels loaded" in (tmp_path / "server1.log").read_text()  # compile=True only
    assert eager[0][0]["message"]["content"] or eager[0][0]["message"].get("reasoning_content")
