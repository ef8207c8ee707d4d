"""Bad input never hurts the server: each case gets its 4xx in OpenAI's envelope, /health stays 200,
and a schemathesis run over /openapi.json finds no 5xx and no response the schema does not describe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis

from tests.fixtures import chat_model_dir
from tests.serve_harness import RunningServer
from tinyseek.serve.state import ServerSettings

MODEL = "tiny-r1"
KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY_LIMIT = 16 * 1024
CONTEXT = 256
GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    model_dir: Path = chat_model_dir(tmp_path_factory.mktemp("tiny-r1"), context=CONTEXT)
    running = RunningServer(
        ServerSettings(model_dir=model_dir, served_model_name=MODEL, api_key=KEY, max_body_bytes=BODY_LIMIT)
    )
    yield running
    running.stop()


def with_(**changes: object) -> dict:
    return {**GOOD, **changes}


def msg(**changes: object) -> dict:
    return with_(messages=[{"role": "user", "content": "hi", **changes}])


CHAT = "/v1/chat/completions"
# (id, path, body: dict | bytes, headers, expected status, expected param or None)
CASES = [
    ("malformed-json", CHAT, b'{"model": "tiny-r1", "messages": [', {}, 400, None),
    (
        "invalid-utf8",
        CHAT,
        b'{"model": "tiny-r1", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
        {},
        400,
        None,
    ),
    ("trailing-data", CHAT, json.dumps(GOOD).encode() + b" x", {}, 400, None),
    (
        "lone-surrogate",
        CHAT,
        json.dumps(msg(content="a")).encode().replace(b'"a"', b'"\\ud800"'),
        {},
        400,
        None,
    ),
    ("body-not-object", CHAT, b"[1, 2, 3]", {}, 400, None),
    ("empty-body", CHAT, b"", {}, 400, None),
    ("missing-messages", CHAT, {"model": MODEL}, {}, 400, "messages"),
    ("empty-messages", CHAT, with_(messages=[]), {}, 400, "messages"),
    ("unknown-role", CHAT, msg(role="wizard"), {}, 400, "messages[0].role"),
    ("tool-role", CHAT, msg(role="tool"), {}, 400, "messages[0].role"),
    ("content-wrong-type", CHAT, msg(content=42), {}, 400, "messages[0].content"),
    ("image-content", CHAT, msg(content=[{"type": "image_url", "image_url": {"url": "x"}}]), {}, 400, None),
    ("max-tokens-zero", CHAT, with_(max_tokens=0), {}, 400, "max_tokens"),
    ("max-tokens-negative", CHAT, with_(max_tokens=-5), {}, 400, "max_tokens"),
    ("max-tokens-string", CHAT, with_(max_tokens="10"), {}, 400, "max_tokens"),
    ("max-tokens-float", CHAT, with_(max_tokens=3.5), {}, 400, "max_tokens"),
    ("max-tokens-beyond-context", CHAT, with_(max_tokens=10**9), {}, 400, "max_tokens"),
    ("temperature-high", CHAT, with_(temperature=5), {}, 400, "temperature"),
    ("temperature-string", CHAT, with_(temperature="hot"), {}, 400, "temperature"),
    ("top-p-zero", CHAT, with_(top_p=0), {}, 400, "top_p"),
    ("huge-n", CHAT, with_(n=1000), {}, 400, "n"),
    ("n-bool", CHAT, with_(n=True), {}, 400, "n"),
    ("too-many-stops", CHAT, with_(stop=["a", "b", "c", "d", "e"]), {}, 400, "stop"),
    ("stop-wrong-type", CHAT, with_(stop=5), {}, 400, "stop"),
    ("negative-seed", CHAT, with_(seed=-1), {}, 400, "seed"),
    ("logprobs-string", CHAT, with_(logprobs="yes"), {}, 400, "logprobs"),
    ("top-logprobs-without-logprobs", CHAT, with_(top_logprobs=3), {}, 400, "top_logprobs"),
    (
        "stream-options-without-stream",
        CHAT,
        with_(stream_options={"include_usage": True}),
        {},
        400,
        "stream_options",
    ),
    ("both-max-tokens", CHAT, with_(max_completion_tokens=4), {}, 400, "max_completion_tokens"),
    ("zero-reasoning-budget", CHAT, with_(max_reasoning_tokens=0), {}, 400, "max_reasoning_tokens"),
    ("unknown-parameter", CHAT, with_(frobnicate=1), {}, 400, "frobnicate"),
    ("unsupported-penalty", CHAT, with_(presence_penalty=0.5), {}, 400, "presence_penalty"),
    ("prompt-beyond-context", CHAT, msg(content="word " * 400), {}, 400, "messages"),
    ("unknown-model", CHAT, with_(model="gpt-17"), {}, 404, "model"),
    ("wrong-key", CHAT, GOOD, {"Authorization": "Bearer nope"}, 401, None),
    ("missing-key", CHAT, GOOD, {"Authorization": ""}, 401, None),
    ("oversized-body", CHAT, msg(content="x" * (BODY_LIMIT + 1)), {}, 413, None),
    (
        "completion-ids-out-of-vocab",
        "/v1/completions",
        {"model": MODEL, "prompt": [1, 10**6]},
        {},
        400,
        "prompt",
    ),
    ("completion-negative-id", "/v1/completions", {"model": MODEL, "prompt": [1, -2]}, {}, 400, "prompt"),
    (
        "completion-negative-id-in-batch",
        "/v1/completions",
        {"model": MODEL, "prompt": [[1], [2, -3]]},
        {},
        400,
        "prompt[1]",
    ),
    (
        "completion-fractional-id",
        "/v1/completions",
        {"model": MODEL, "prompt": [1, 2.5]},
        {},
        400,
        "prompt[1]",
    ),
    ("completion-prompt-number", "/v1/completions", {"model": MODEL, "prompt": 5}, {}, 400, "prompt"),
    ("completion-empty-ids", "/v1/completions", {"model": MODEL, "prompt": []}, {}, 400, "prompt"),
    ("completion-echo", "/v1/completions", {"model": MODEL, "prompt": "a", "echo": True}, {}, 400, "echo"),
    (
        "completion-logprobs-high",
        "/v1/completions",
        {"model": MODEL, "prompt": "a", "logprobs": 99},
        {},
        400,
        "logprobs",
    ),
    ("unknown-route", "/v1/engines", GOOD, {}, 404, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_4xx_envelope_and_server_stays_healthy(server: RunningServer, case: tuple) -> None:
    _, path, body, headers, status, param = case
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent_headers = {**AUTH, "Content-Type": "application/json", **headers}
    if not sent_headers["Authorization"]:
        del sent_headers["Authorization"]
    response = httpx.post(f"{server.base_url}{path}", content=content, headers=sent_headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    if case[0] in ("malformed-json", "trailing-data", "lone-surrogate"):
        assert error["code"] == "invalid_json" and "line 1 column" in error["message"], error
    if case[0].startswith("completion-negative-id"):  # the token-id form's own message, not the union's first
        assert "token ids are >= 0, got -" in error["message"], error
    if case[0] == "completion-prompt-number":
        assert "a list of token ids" in error["message"], error
    if case[0] == "prompt-beyond-context":
        assert str(CONTEXT) in error["message"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.base_url}/health").status_code == 200


def test_chunked_oversized_body_is_refused(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard must count while reading
        for _ in range(BODY_LIMIT // 1024 + 2):
            yield b" " * 1024

    response = httpx.post(f"{server.base_url}{CHAT}", content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unloadable_model_answers_503_and_stays_up(tmp_path: Path) -> None:
    broken = RunningServer(ServerSettings(model_dir=tmp_path, served_model_name=MODEL), wait=False)
    try:
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{broken.base_url}/health").json()["status"] == "loading"
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        health = httpx.get(f"{broken.base_url}/health")
        assert (health.status_code, health.json()) == (503, {"status": "failed"})
        reply = httpx.post(f"{broken.base_url}{CHAT}", json=GOOD)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "model_load_failed"
        assert httpx.get(f"{broken.base_url}/v1/models").status_code == 200
    finally:
        broken.stop()


def test_wrong_method_and_valid_request_after_the_suite(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}{CHAT}", headers=AUTH)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    good = httpx.post(f"{server.base_url}{CHAT}", json=GOOD, headers=AUTH, timeout=30)
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] <= 4
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401
    schema = httpx.get(f"{server.base_url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error(server: RunningServer, mode: schemathesis.GenerationMode) -> None:
    """Schema-valid and schema-violating requests to every operation: no 5xx, every answer documented.

    Schemathesis's `positive_data_acceptance` check is left out: a schema-valid request may still be
    refused for limits that depend on the model (prompt + max_tokens beyond the context, token ids
    beyond the vocabulary, an unknown model name), which the schema cannot state.
    """
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    statuses: list[int] = []

    @hypothesis.given(case=schema.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=server.base_url,
            headers=AUTH,
            timeout=60,
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
        statuses.append(response.status_code)

    call()
    assert all(s < 500 for s in statuses)
    if mode == schemathesis.GenerationMode.POSITIVE:
        assert statuses.count(200) >= 10, "schema-valid requests should mostly be served"
    assert httpx.get(f"{server.base_url}/health").status_code == 200
