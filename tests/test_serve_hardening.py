"""Defects a hostile client found: a 500 from one header, work before limits, work on the event loop,
and streams that died without an error event. Each test failed on the code before its fix.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures import chat_model_dir
from tests.serve_harness import RunningServer
from tests.serve_process import HealthWatch, ServerProcess
from tinyseek.serve.state import ServerSettings

MODEL = "tiny-r1"
KEY = "sk-harden"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
PROMPT_CHARS = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    model_dir: Path = chat_model_dir(tmp_path_factory.mktemp("tiny-r1"))
    running = RunningServer(
        ServerSettings(
            model_dir=model_dir, served_model_name=MODEL, api_key=KEY, max_prompt_chars=PROMPT_CHARS
        )
    )
    yield running
    running.stop()


@pytest.fixture
def encode_calls(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the server tokenizes during the test, recorded by wrappers around the encoders."""
    tokenizer = server.state.loaded.tokenizer
    calls: list[str] = []
    for name in ("encode", "encode_batch"):
        original = getattr(tokenizer, name)

        def counting(texts: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.extend([texts] if isinstance(texts, str) else texts)
            return _original(texts, *args, **kwargs)

        monkeypatch.setattr(tokenizer, name, counting)
    return calls


def health_ok(server: RunningServer) -> None:
    assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer \xc3\xa9t\xc3\xa9",
        b"Bearer " + KEY.encode() + b"\xff",
        b"bearer \x80",
        b"\xe2\x82\xac " + KEY.encode(),
    ],
    ids=["utf8-token", "key-plus-byte", "latin1-byte", "non-ascii-scheme"],
)
def test_non_ascii_authorization_is_401_not_500(server: RunningServer, header: bytes) -> None:
    response = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": header}, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"
    health_ok(server)


def test_right_key_still_accepted_with_extra_spaces(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer   {KEY}"})
    assert response.status_code == 200


@pytest.mark.parametrize("key", ["clé-secrète", "sk-\u2603", "sk-key\n", "sk key"])
def test_unusable_configured_key_is_refused_at_startup(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="api_key") as err:
        ServerSettings(model_dir=tmp_path, api_key=key)
    assert "printable ASCII" in str(err.value)


# -- limits before work, work off the event loop ---------------------------------------------


def test_too_many_prompts_refused_before_tokenizing(server: RunningServer, encode_calls: list[str]) -> None:
    body = {"model": MODEL, "prompt": ["ab"] * 65, "max_tokens": 1}
    response = httpx.post(f"{server.base_url}{COMPLETIONS}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "prompt"
    assert encode_calls == []


def test_total_prompt_length_refused_before_tokenizing(
    server: RunningServer, encode_calls: list[str]
) -> None:
    body = {"model": MODEL, "prompt": ["word " * 5000] * 4, "max_tokens": 1}  # 100k chars in all
    response = httpx.post(f"{server.base_url}{COMPLETIONS}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("prompt", "prompt_too_long")
    assert str(PROMPT_CHARS) in error["message"] and "100000" in error["message"]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "x" * (PROMPT_CHARS + 1)}]}
    response = httpx.post(f"{server.base_url}{CHAT}", json=chat, headers=AUTH, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    assert encode_calls == []


def test_token_id_prompt_longer_than_the_context_refused(server: RunningServer) -> None:
    body = {"model": MODEL, "prompt": [[1] * 5000] * 2, "max_tokens": 1}
    response = httpx.post(f"{server.base_url}{COMPLETIONS}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"


def test_tokenizing_runs_off_the_event_loop(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow tokenization must not stall /health: it runs in a worker thread, not the loop's."""
    tokenizer = server.state.loaded.tokenizer
    threads: list[threading.Thread] = []
    for name in ("encode", "encode_batch"):
        original = getattr(tokenizer, name)

        def slow(texts: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            threads.append(threading.current_thread())
            time.sleep(1.0)
            return _original(texts, *args, **kwargs)

        monkeypatch.setattr(tokenizer, name, slow)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{server.base_url}{CHAT}", json=body, headers=AUTH, timeout=30)
        deadline = time.monotonic() + 10
        while not threads and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        health_ok(server)
        waited = time.perf_counter() - start
        assert pending.result().status_code == 200
    assert threads and all(t is not server.thread for t in threads)
    assert waited < 0.5, f"/health took {waited:.3f}s while a prompt was being tokenized"


# -- failures inside a stream ----------------------------------------------------------------


def _events(response: httpx.Response) -> list[Any]:
    return [
        line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        for line in response.iter_lines()
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize(
    ("path", "attribute", "body"),
    [
        (CHAT, "chat_entries", {"messages": [{"role": "user", "content": "hi"}], "logprobs": True}),
        (COMPLETIONS, "completion_logprobs", {"prompt": "hi", "logprobs": 1}),
    ],
    ids=["chat", "completions"],
)
def test_any_exception_in_a_stream_ends_it_with_an_error_event(
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
    attribute: str,
    body: dict[str, Any],
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in the middle of a stream")

    monkeypatch.setattr(server.state.loaded.token_bytes, attribute, broken)
    metric: Callable[[], float] = lambda: (  # noqa: E731
        server.state.metrics.registry.get_sample_value("tinyseek_stream_errors_total", {"route": path}) or 0.0
    )
    before = metric()
    request = {"model": MODEL, "max_tokens": 8, "seed": 0, "stream": True, **body}
    with (
        caplog.at_level(logging.ERROR, logger="tinyseek.serve"),
        httpx.stream("POST", f"{server.base_url}{path}", json=request, headers=AUTH, timeout=30) as response,
    ):
        assert response.status_code == 200
        events = _events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "a bug in the middle" not in error["message"], "internal details must not leak"
    assert metric() == before + 1
    assert any("stream" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    health_ok(server)
    good = httpx.post(f"{server.base_url}{path}", json={**request, "stream": False}, headers=AUTH, timeout=30)
    assert good.status_code == 200
    engine = server.state.loaded.llm.engine
    deadline = time.monotonic() + 10
    while engine.has_unfinished() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not engine.has_unfinished()


# -- the largest bodies the server accepts ---------------------------------------------------

WORST_BODIES = {
    "340k-short-prompts": {"model": MODEL, "prompt": ["ab"] * 340_000, "max_tokens": 1},
    "64-prompt-lists-of-ids": {"model": MODEL, "prompt": [[1] * 10_000] * 64, "max_tokens": 1},
    "60k-empty-messages": {"model": MODEL, "messages": [{"role": "user", "content": ""}] * 60_000},
    "1m-char-chat-prompt": {"model": MODEL, "messages": [{"role": "user", "content": "word " * 200_000}]},
    "1m-char-completion-prompt": {"model": MODEL, "prompt": "word " * 200_000},
    "65k-content-parts": {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": ""}] * 65_000}],
    },
}


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`tinyseek serve` with its default limits, in its own process (so /health latency is its own)."""
    directory = tmp_path_factory.mktemp("limits")
    server = ServerProcess(chat_model_dir(directory / "model"), directory / "server.log", KEY)
    yield server
    server.stop()


@pytest.mark.parametrize("name", WORST_BODIES)
def test_a_2_mib_body_does_not_stall_health(default_server: ServerProcess, name: str) -> None:
    """The server parses a near-limit body, or tokenizes a 1M-character prompt, while /health is polled
    every 20 ms from another process: neither may hold the event loop (or the GIL, which a thread
    doing the work may keep) for 100 ms."""
    body = json.dumps(WORST_BODIES[name]).encode()
    assert 0.9 * 2**20 < len(body) <= 2 * 2**20, len(body)
    watch = HealthWatch(default_server.base_url)
    try:
        time.sleep(0.3)
        mark = watch.mark()
        path = COMPLETIONS if "prompt" in WORST_BODIES[name] else CHAT
        headers = {**AUTH, "content-type": "application/json"}
        response = httpx.post(f"{default_server.base_url}{path}", content=body, headers=headers, timeout=60)
        assert response.status_code == 400, response.text[:300]
        worst = watch.worst_since(mark)
    finally:
        watch.stop()
    assert not watch.failures and worst < 0.1, (
        f"/health took {worst * 1000:.0f} ms during a {len(body)}-byte body"
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_engine_stopping_mid_request_is_503_not_500(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """The engine stopping under a request (shutdown) is the server being unavailable, not a bug."""
    from tinyseek.serve.engine_loop import EngineStopped
    from tinyseek.serve.generation import ChoiceRun

    async def stopped(self: ChoiceRun) -> Any:
        raise EngineStopped("the server is shutting down")
        yield  # an async generator, as events() is

    monkeypatch.setattr(ChoiceRun, "events", stopped)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": stream,
    }
    response = httpx.post(f"{server.base_url}{CHAT}", json=body, headers=AUTH, timeout=30)
    if stream:
        error = _events(response)[-2]["error"]
    else:
        assert response.status_code == 503, response.text
        error = response.json()["error"]
    assert (error["type"], error["code"]) == ("overloaded_error", "shutting_down")
    monkeypatch.undo()
    health_ok(server)
