"""The server under a hostile client: no 5xx, and /health answering within 100 ms throughout.

- Schema fuzzing: schemathesis generates schema-valid and schema-violating requests to every route;
  Hypothesis adds hostile headers (Authorization with non-ASCII bytes, wrong schemes, 8 KB tokens;
  odd Content-Type and Content-Encoding; random extra headers) and body encodings (UTF-16, Latin-1,
  gzip, truncated JSON, a BOM, NaN).
- Stateful sequences: multi-turn conversations that send the reasoning back, streams abandoned
  mid-way, bad keys and oversized bodies in between (a Hypothesis state machine).
- Slow clients (bodies dribbled a byte at a time, streams read slowly) and a disconnect storm (clients
  that reset the connection mid-body, right after the request, after the first chunk, or while
  waiting), after which nothing is left running in the engine.

The server is a subprocess (as a user runs it); a thread polls /health every 20 ms for the whole
module. `make test` runs the small counts; `make test-slow` the long ones. With
TINYSEEK_FUZZ_REPORT=FILE the counts (requests, distinct cases, 5xx, worst /health latency) are
written there as JSON (the README's figures come from it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from schemathesis.core import NotSet

from tests.fixtures import chat_model_dir
from tests.serve_process import HealthWatch, ServerProcess

KEY = "sk-fuzz-key"
MODEL = "tiny-r1"
CONTEXT = 128
BODY_LIMIT = 64 * 1024
HEALTH_LIMIT = 0.1
GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "What is 3 + 4?"}], "max_tokens": 8}
# (fast, slow) sizes
SCHEMA_EXAMPLES = (250, 2000)
STATEFUL_RUNS = (20, 100)
SLOW_CLIENTS = ((6, 2.0), (24, 8.0))  # clients, seconds each takes to send its body
STORM = (60, 400)


class Fuzzer:
    """Sends requests, counts them and their distinct cases, and keeps every 5xx and bad envelope."""

    def __init__(self, server: ServerProcess, watch: HealthWatch) -> None:
        self.server, self.watch = server, watch
        self.client = httpx.Client(base_url=server.base_url, timeout=120)
        self.requests = 0
        self.cases: set[str] = set()
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def count(self, method: str, path: str, headers: Any, content: bytes | None, status: int) -> None:
        digest = hashlib.sha256(repr((method, path, headers, content)).encode()).hexdigest()
        with self.lock:
            self.requests += 1
            self.cases.add(digest)
            self.statuses[(path.split("?")[0], status)] += 1

    def send(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], content: bytes | None
    ) -> httpx.Response:
        response = self.client.request(method, path, headers=headers, content=content)
        self.count(method, path, headers, content, response.status_code)
        self.check(f"{method} {path} {headers!r} {content[:200] if content else content!r}", response)
        return response

    def check(self, what: str, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 500:
            self.problems.append(f"{status} for {what}: {response.text[:300]}")
        elif status >= 400 and response.headers.get("content-type", "").startswith("application/json"):
            error = response.json().get("error")
            if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
                self.problems.append(f"{status} without OpenAI's envelope for {what}: {response.text[:300]}")
        elif status == 200 and response.headers.get("content-type", "").startswith("text/event-stream"):
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            if not events or events[-1] != "[DONE]":
                self.problems.append(f"stream without [DONE] for {what}")
            for event in events[:-1]:
                error = json.loads(event).get("error")
                if error is not None:
                    self.problems.append(f"error event {error} for {what}")

    def assert_clean(self, mark: int) -> None:
        assert not self.problems, "\n".join(self.problems[:10])
        errors = {k: v for k, v in self.server.new_counts().items() if k[1].startswith("5")}
        assert not errors, f"the server counted 5xx answers: {errors}"
        worst = self.watch.worst_since(mark)
        assert not self.watch.failures, self.watch.failures[:5]
        assert worst < HEALTH_LIMIT, f"/health took {worst * 1000:.0f} ms"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    directory = tmp_path_factory.mktemp("fuzz")
    model_dir = chat_model_dir(directory / "model", context=CONTEXT)
    server = ServerProcess(
        model_dir, directory / "server.log", KEY,
        "--max-body-bytes", str(BODY_LIMIT), "--max-prompt-chars", "16384", "--max-queue", "128",
    )  # fmt: skip
    watch = HealthWatch(server.base_url)
    fuzzer = Fuzzer(server, watch)
    try:
        yield fuzzer
    finally:
        watch.stop()
        report = {
            "requests": fuzzer.requests,
            "distinct_cases": len(fuzzer.cases),
            "client_5xx": sum(n for (_, status), n in fuzzer.statuses.items() if status >= 500),
            "server_5xx": server.server_errors(),
            "health_polls": len(watch.latencies),
            "worst_health_ms": round(1000 * max(watch.latencies, default=0.0), 1),
            "p99_health_ms": round(1000 * sorted(watch.latencies)[int(0.99 * len(watch.latencies))], 1)
            if watch.latencies
            else 0.0,
            "health_over_limit": sum(t >= HEALTH_LIMIT for t in watch.latencies),
            "statuses": {f"{path} {status}": n for (path, status), n in sorted(fuzzer.statuses.items())},
        }
        print(json.dumps(report, indent=2))
        if os.environ.get("TINYSEEK_FUZZ_REPORT"):
            Path(os.environ["TINYSEEK_FUZZ_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")
        fuzzer.client.close()
        server.stop()


# -- hostile headers and encodings -----------------------------------------------------------


def header_value(raw: bytes) -> bytes:
    """Bytes h11 will send as a header value: no control characters, no surrounding whitespace."""
    return bytes(b for b in raw if b >= 0x21 and b != 0x7F or b in (0x20, 0x09)).strip(b" \t")


HEADER_BYTES = st.binary(max_size=48).map(header_value)
VALID_AUTH = b"Bearer " + KEY.encode()
AUTH = st.one_of(
    st.just(VALID_AUTH),
    st.just(VALID_AUTH),
    st.just(VALID_AUTH),
    st.none(),
    HEADER_BYTES.map(lambda t: b"Bearer " + t if t else b"Bearer"),
    st.tuples(
        st.sampled_from([b"bearer", b"BEARER", b"Basic", b"Token", "Bearér".encode()]), HEADER_BYTES
    ).map(lambda p: p[0] + b" " + p[1] if p[1] else p[0]),
    st.sampled_from(
        [
            VALID_AUTH + "é".encode(),
            VALID_AUTH + b"\xff",
            b"Bearer " + b"k" * 8000,
            b"Bearer  " + KEY.encode(),
        ]
    ),
)
CONTENT_TYPE = st.one_of(
    st.sampled_from([b"application/json"] * 3 + [b"application/json; charset=utf-8", b"text/plain",
                     b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=zz",
                     b"application/json; charset=utf-16", b"application/\xff\xfejson", b"*/*"]),
    st.none(),
    HEADER_BYTES.filter(bool),
)  # fmt: skip
CONTENT_ENCODING = st.one_of(
    st.none(), st.none(), st.sampled_from([b"gzip", b"deflate", b"br", b"identity", b"x-\xff"])
)
EXTRA_HEADERS = st.lists(
    st.tuples(st.from_regex(r"\Ax-[a-z0-9-]{1,16}\Z").map(str.encode), HEADER_BYTES.filter(bool)), max_size=3
)
BODY_ENCODING = st.sampled_from(["json"] * 4 + ["utf-16", "latin-1", "gzip", "truncated", "bom", "nan"])


@st.composite
def hostile_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = []
    for name, strategy in (
        (b"authorization", AUTH),
        (b"content-type", CONTENT_TYPE),
        (b"content-encoding", CONTENT_ENCODING),
    ):
        value = draw(strategy)
        if value is not None:
            headers.append((name, value))
    return headers + draw(EXTRA_HEADERS)


def encode_body(body: Any, how: str) -> bytes:
    if isinstance(body, bytes):
        return body
    if how == "nan" and isinstance(body, dict):
        return json.dumps({**body, "temperature": float("nan")}).encode()
    text = json.dumps(body, ensure_ascii=False)
    return {
        "utf-16": lambda: text.encode("utf-16"),
        "latin-1": lambda: text.encode("latin-1", "replace"),
        "gzip": lambda: gzip.compress(text.encode()),
        "truncated": lambda: text.encode()[: max(1, len(text) // 2)],
        "bom": lambda: b"\xef\xbb\xbf" + text.encode(),
    }.get(how, lambda: text.encode())()


def fuzz_schema(fuzz: Fuzzer, mode: schemathesis.GenerationMode, examples: int) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz.server.base_url}/openapi.json")
    mark = fuzz.watch.mark()

    @hypothesis.given(
        case=schema.as_strategy(generation_mode=mode), headers=hostile_headers(), how=BODY_ENCODING
    )
    @hypothesis.settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
    )  # fmt: skip
    def call(case: schemathesis.Case, headers: list[tuple[bytes, bytes]], how: str) -> None:
        content = None if isinstance(case.body, NotSet) else encode_body(case.body, how)
        fuzz.send(case.method.upper(), case.formatted_path, headers, content)

    call()
    fuzz.assert_clean(mark)


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_schema_fuzz_with_hostile_headers(fuzz: Fuzzer, mode: schemathesis.GenerationMode) -> None:
    fuzz_schema(fuzz, mode, SCHEMA_EXAMPLES[0])
    if mode == schemathesis.GenerationMode.POSITIVE:
        served = sum(
            n for (path, status), n in fuzz.statuses.items() if path.startswith("/v1/") and status == 200
        )
        assert served >= 10, f"too few requests got through to the model: {fuzz.statuses}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_schema_fuzz_with_hostile_headers_long(fuzz: Fuzzer, mode: schemathesis.GenerationMode) -> None:
    fuzz_schema(fuzz, mode, SCHEMA_EXAMPLES[1])


# -- stateful sequences ----------------------------------------------------------------------


def json_request(fuzz: Fuzzer, path: str, body: Any, auth: bytes = VALID_AUTH) -> httpx.Response:
    headers = [(b"authorization", auth), (b"content-type", b"application/json")]
    return fuzz.send("POST", path, headers, json.dumps(body).encode())


class Session(RuleBasedStateMachine):
    """One client's conversation, with abandoned streams, bad keys and oversized bodies in between."""

    fuzz: Fuzzer

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, Any]] = []

    @rule(
        text=st.text(max_size=30),
        stream=st.booleans(),
        n=st.integers(1, 3),
        max_tokens=st.integers(1, 12),
        logprobs=st.booleans(),
        seed=st.none() | st.integers(0, 2**31),
    )
    def chat_turn(
        self, text: str, stream: bool, n: int, max_tokens: int, logprobs: bool, seed: int | None
    ) -> None:
        messages = [*self.history[-4:], {"role": "user", "content": text}]
        body = {"model": MODEL, "messages": messages, "stream": stream, "n": n, "max_tokens": max_tokens,
                "logprobs": logprobs, "seed": seed}  # fmt: skip
        response = json_request(self.fuzz, "/v1/chat/completions", body)
        if response.status_code == 200 and not stream:
            message = response.json()["choices"][0]["message"]
            self.history += [messages[-1], {"role": "assistant", "content": message["content"],
                                            "reasoning_content": message["reasoning_content"]}]  # fmt: skip

    @rule(
        prompt=st.text(max_size=40) | st.lists(st.integers(0, 400), min_size=1, max_size=20),
        stream=st.booleans(),
    )
    def completion(self, prompt: Any, stream: bool) -> None:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 6, "stream": stream}
        json_request(self.fuzz, "/v1/completions", body)

    @rule(lines=st.integers(0, 3))
    def abandoned_stream(self, lines: int) -> None:
        body = {**GOOD, "stream": True, "max_tokens": 60, "n": 2}
        headers = {"authorization": VALID_AUTH.decode()}
        with httpx.stream("POST", f"{self.fuzz.server.base_url}/v1/chat/completions", json=body,
                          headers=headers, timeout=60) as response:  # fmt: skip
            self.fuzz.count("POST", "/v1/chat/completions", "abandoned", None, response.status_code)
            for _, _ in zip(range(lines), response.iter_lines(), strict=False):
                pass

    @rule(token=HEADER_BYTES)
    def wrong_key(self, token: bytes) -> None:
        response = json_request(self.fuzz, "/v1/chat/completions", GOOD, b"Bearer x" + token)
        assert response.status_code == 401

    @rule()
    def oversized(self) -> None:
        body = {**GOOD, "messages": [{"role": "user", "content": "x" * BODY_LIMIT}]}
        assert json_request(self.fuzz, "/v1/chat/completions", body).status_code == 413

    @rule()
    def listing(self) -> None:
        self.fuzz.send("GET", "/v1/models", [(b"authorization", VALID_AUTH)], None)
        self.fuzz.send("GET", "/metrics", [], None)

    @invariant()
    def no_server_error(self) -> None:
        assert not self.fuzz.problems, self.fuzz.problems[:3]


def run_sessions(fuzz: Fuzzer, runs: int) -> None:
    mark = fuzz.watch.mark()
    Session.fuzz = fuzz
    settings = hypothesis.settings(
        max_examples=runs, stateful_step_count=12, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
    )  # fmt: skip
    run_state_machine_as_test(Session, settings=settings)
    fuzz.assert_clean(mark)


def test_stateful_sessions(fuzz: Fuzzer) -> None:
    run_sessions(fuzz, STATEFUL_RUNS[0])


@pytest.mark.slow
def test_stateful_sessions_long(fuzz: Fuzzer) -> None:
    run_sessions(fuzz, STATEFUL_RUNS[1])


# -- slow clients and a disconnect storm -----------------------------------------------------


def raw_request(body: dict[str, Any], length: int | None = None) -> tuple[bytes, bytes]:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length or len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode(), data


def slow_sender(port: int, seconds: float) -> int:
    """Sends a request's body a byte at a time over `seconds`; returns the status it gets."""
    head, data = raw_request(GOOD)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(seconds / len(data))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def slow_clients(fuzz: Fuzzer, clients: int, seconds: float) -> None:
    mark = fuzz.watch.mark()
    with ThreadPoolExecutor(clients + 1) as pool:
        senders = [pool.submit(slow_sender, fuzz.server.port, seconds) for _ in range(clients)]
        time.sleep(seconds / 4)
        start = time.perf_counter()
        fast = json_request(fuzz, "/v1/chat/completions", GOOD)  # served while the slow bodies trickle in
        fast_seconds = time.perf_counter() - start
        body = {**GOOD, "stream": True, "max_tokens": 40}
        with httpx.stream("POST", f"{fuzz.server.base_url}/v1/chat/completions", json=body,
                          headers={"authorization": VALID_AUTH.decode()}, timeout=60) as response:  # fmt: skip
            lines = []
            for line in response.iter_lines():  # a slow reader
                lines.append(line)
                time.sleep(0.02)
        statuses = [s.result() for s in senders]
    for status in statuses:
        fuzz.count("POST", "/v1/chat/completions", "slow-sender", None, status)
    fuzz.count("POST", "/v1/chat/completions", "slow-reader", None, response.status_code)
    assert fast.status_code == 200 and fast_seconds < seconds, fast_seconds
    assert statuses == [200] * clients
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
    fuzz.assert_clean(mark)


def test_slow_clients(fuzz: Fuzzer) -> None:
    slow_clients(fuzz, *SLOW_CLIENTS[0])


@pytest.mark.slow
def test_slow_clients_long(fuzz: Fuzzer) -> None:
    slow_clients(fuzz, *SLOW_CLIENTS[1])


def abrupt_client(port: int, kind: str, n: int) -> None:
    """A client that resets its connection at one point of its request."""
    body = {**GOOD, "max_tokens": 60, "n": n, "stream": kind != "waiting"}
    head, data = raw_request(body)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        if kind == "mid-body":
            sock.sendall(head + data[: len(data) // 2])
            return
        sock.sendall(head + data)
        if kind == "first-chunk":
            sock.recv(256)
        elif kind == "waiting":
            time.sleep(0.05)


def disconnect_storm(fuzz: Fuzzer, clients: int) -> None:
    mark = fuzz.watch.mark()
    errors_before = fuzz.server.server_errors()
    kinds = ["mid-body", "after-request", "first-chunk", "waiting"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: abrupt_client(fuzz.server.port, kinds[i % 4], 1 + i % 4), range(clients)))
    for i in range(clients):
        fuzz.count("POST", "/v1/chat/completions", f"storm-{i}", None, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        fuzz.server.gauge("tinyseek_requests_running") or fuzz.server.gauge("tinyseek_queue_depth")
    ):
        time.sleep(0.1)
    assert fuzz.server.gauge("tinyseek_requests_running") == 0
    assert fuzz.server.gauge("tinyseek_queue_depth") == 0
    assert fuzz.server.server_errors() == errors_before
    assert json_request(fuzz, "/v1/chat/completions", GOOD).status_code == 200
    fuzz.assert_clean(mark)


def test_disconnect_storm(fuzz: Fuzzer) -> None:
    disconnect_storm(fuzz, STORM[0])


@pytest.mark.slow
def test_disconnect_storm_long(fuzz: Fuzzer) -> None:
    disconnect_storm(fuzz, STORM[1])
