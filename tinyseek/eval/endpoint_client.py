"""A client for any OpenAI-compatible endpoint, as an evaluation needs it: one completion per call,
the reasoning apart from the answer, and patience with a busy server.

Design choices:
- One sample per request (no `n`): hosted reasoners (DeepSeek's `deepseek-reasoner`, most vLLM
  deployments behind gateways) refuse or ignore `n > 1`, a failed request costs one sample rather
  than k, and `usage` then belongs to one sample (its reasoning tokens included). tinyseek's server
  gives choice i of a seeded request the seed + i, so sample i asked alone with seed + i is the same
  completion the in-process evaluation draws.
- The reasoning is read where servers put it: `reasoning_content` (DeepSeek, tinyseek), `reasoning`
  (vLLM >= 0.11, Ollama), or a `<think>...</think>` block left in `content` (servers without a
  reasoning parser). `EndpointCompletion.text` rebuilds the completion as generated
  (`reasoning</think>answer`), which is what the scorer parses.
- Retries: 429, 5xx, timeouts and dropped connections are retried with exponential backoff and
  jitter (a server's `Retry-After` is honoured when longer); any other status is the caller's
  mistake (wrong key, unknown model, too many tokens) and fails at once with the server's message.
- Synchronous httpx behind a thread pool (the caller's): the work is waiting on the network, and one
  `httpx.Client` is safe to share across threads, so no event loop is needed in the CLI.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from tinyseek.chat_template import THINK_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """A request the endpoint refused for good, or that kept failing after every retry."""


@dataclass(frozen=True)
class EndpointUsage:
    """Token counts of one response (`None` where the server did not report them)."""

    prompt_tokens: int = 0
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int = 0

    @classmethod
    def from_json(cls, usage: dict[str, Any] | None) -> EndpointUsage:
        if not usage:
            return cls()
        details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        cached = prompt_details.get("cached_tokens", usage.get("prompt_cache_hit_tokens", 0))
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=usage.get("completion_tokens"),
            reasoning_tokens=details.get("reasoning_tokens"),
            cached_tokens=int(cached or 0),
        )


@dataclass(frozen=True)
class EndpointCompletion:
    """One completion: reasoning (None when the server reported none), answer, why it ended, usage."""

    reasoning: str | None
    content: str
    finish_reason: str | None
    usage: EndpointUsage

    @property
    def closed(self) -> bool:
        """Whether the reasoning ended with `</think>` (an empty answer leaves that to the counts).

        A server splits `reasoning</think>` + EOS and a reasoning cut by EOS the same way (answer
        ""). tinyseek's usage tells them apart: the `</think>` token is a completion token but not a
        reasoning token, so a closed reasoning leaves one more token beyond the reasoning (plus the
        EOS when it stopped). Without counts an empty answer is read as an unclosed reasoning.
        """
        if self.reasoning is None or self.content:
            return True
        done, thought = self.usage.completion_tokens, self.usage.reasoning_tokens
        if done is None or thought is None:
            return False
        return done - thought > (1 if self.finish_reason == "stop" else 0)

    @property
    def text(self) -> str:
        """The completion as the model wrote it after the prompt's `<think>\\n`."""
        if self.reasoning is None:
            return self.content
        return self.reasoning + THINK_CLOSE + self.content if self.closed else self.reasoning


def split_think(content: str) -> tuple[str | None, str]:
    """(reasoning, answer) of a `content` that carries its reasoning inline, else (None, content).

    Servers without a reasoning parser return R1's raw text: reasoning then `</think>` (the opening
    `<think>` was in the prompt, or is echoed at the start).
    """
    head, marker, tail = content.partition(THINK_CLOSE)
    if not marker:
        return None, content
    stripped = head.lstrip()
    return (stripped[len(THINK_OPEN) :] if stripped.startswith(THINK_OPEN) else head), tail


def parse_chat_choice(body: dict[str, Any]) -> EndpointCompletion:
    """The completion of a non-streamed chat response (first choice)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise EndpointError(
            f"malformed chat response: expected a non-empty 'choices' list, got {body!r:.300}"
        )
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = message.get("reasoning")
    if reasoning is None:
        reasoning, content = split_think(content)
    return EndpointCompletion(
        reasoning, content, choice.get("finish_reason"), EndpointUsage.from_json(body.get("usage"))
    )


def parse_text_choice(body: dict[str, Any], stops: list[str]) -> EndpointCompletion:
    """The completion of a non-streamed /v1/completions response, with its stop string put back.

    OpenAI's API drops the stop string; the R1-Zero format check needs it (`...</answer>`). vLLM says
    which one matched (`stop_reason`); otherwise a stop that closes a tag the text left open
    (`</answer>` after an unclosed `<answer>`) is restored when the completion ended on "stop".
    """
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise EndpointError(f"malformed completion response: expected 'choices', got {body!r:.300}")
    choice = choices[0]
    text = choice.get("text") or ""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in stops:
        text += matched
    elif finish == "stop" and matched is None:
        for stop in stops:
            opener = stop.replace("</", "<", 1) if stop.startswith("</") else None
            if opener and text.rfind(opener) > text.rfind(stop):
                text += stop
                break
    return EndpointCompletion(None, text, finish, EndpointUsage.from_json(body.get("usage")))


class EndpointClient:
    """POSTs to `{base_url}/chat/completions` or `/completions` with retries; thread-safe."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 8,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        concurrency: int = 8,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r}: expected an http:// or https:// URL")
        if not model:
            raise ValueError("model: expected the served model name (GET /v1/models lists it)")
        for name, value in (("timeout", timeout), ("backoff", backoff), ("max_backoff", max_backoff)):
            if value <= 0:
                raise ValueError(f"{name}={value}: expected a positive number of seconds")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries}: expected 0 or more")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.retries = 0  # retried attempts so far, for the report
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self._jitter = random.Random()
        self._aborted = threading.Event()

    def close(self) -> None:
        self._http.close()

    def abort(self) -> None:
        """Fail every request in flight or waiting to retry, at once (Ctrl-C must not wait for them)."""
        self._aborted.set()
        self._http.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> EndpointCompletion:
        body = {"model": self.model, "messages": messages, **sampling}
        return parse_chat_choice(self.post("/chat/completions", body))

    def complete(self, prompt: str, sampling: dict[str, Any], stops: list[str]) -> EndpointCompletion:
        body = {"model": self.model, "prompt": prompt, **sampling}
        if stops:
            body["stop"] = stops
        return parse_text_choice(self.post("/completions", body), stops)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * self._jitter.uniform(0.5, 1.0)
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(self.max_backoff, float(retry_after)))
        return delay

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON and return the JSON reply, retrying what a retry can fix."""
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            retry_after = None
            if self._aborted.is_set():
                raise EndpointError(f"POST {url}: aborted")
            try:
                response = self._http.post(url, json=body)
            except RuntimeError as err:  # httpx refuses a closed client: abort() came first
                raise EndpointError(f"POST {url}: aborted") from err
            except (httpx.TimeoutException, httpx.TransportError) as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    try:
                        return dict(response.json())
                    except ValueError as err:
                        problem = f"invalid JSON in a 200 reply ({err})"
                else:
                    problem = f"HTTP {response.status_code}: {_error_message(response)}"
                    if response.status_code not in RETRY_STATUSES:
                        raise EndpointError(f"POST {url} failed with {problem}")
                    retry_after = response.headers.get("retry-after")
            if attempt == self.max_retries:
                raise EndpointError(f"POST {url} failed {attempt + 1} times; last: {problem}")
            delay = self._delay(attempt, retry_after)
            self.retries += 1
            log.info("POST %s: %s; retry %d in %.1fs", url, problem, attempt + 1, delay)
            if self._aborted.wait(delay):
                raise EndpointError(f"POST {url}: aborted")
        raise AssertionError("unreachable")


def _error_message(response: httpx.Response) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return response.text[:300] or response.reason_phrase
