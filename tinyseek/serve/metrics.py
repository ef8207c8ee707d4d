"""Prometheus metrics of the server, exposed at GET /metrics through prometheus_client.

Design choices:
- Each server owns a `CollectorRegistry` (not the process-global one), so several servers in one
  process (tests) do not collide and /metrics shows only serving metrics.
- Requests are counted by route and status in an ASGI wrapper that sees every response, including
  the guard's 401/413 and validation 400s. The label is the matched route's path template (the
  router leaves it in the scope); unmatched paths and requests the guard refused share `other`, so
  the label set stays bounded whatever clients send. A request whose client left before any answer
  is counted as 499 (nginx's "client closed request"), not as a 500 the server never sent.
- Queue depth and running requests are gauges set by the engine loop; time to first token and
  end-to-end latency are histograms; the prefix-cache hit rate is a gauge over the counters' totals.
"""

from __future__ import annotations

import asyncio
import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_CLOSED = 499
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServerMetrics:
    """The server's counters, gauges and histograms, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._hits = 0
        self._prompts = 0
        counter = functools.partial(Counter, registry=self.registry)
        gauge = functools.partial(Gauge, registry=self.registry)
        latency = functools.partial(Histogram, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.requests = counter(
            "tinyseek_requests", "HTTP requests by route and status code", ["route", "status"]
        )
        self.prompt_tokens = counter("tinyseek_prompt_tokens", "Prompt tokens received")
        self.completion_tokens = counter("tinyseek_completion_tokens", "Tokens generated")
        self.cache_hit_tokens = counter(
            "tinyseek_prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache"
        )
        self.cache_miss_tokens = counter(
            "tinyseek_prefix_cache_miss_tokens", "Prompt tokens computed (not in the prefix cache)"
        )
        self.cache_hit_rate = gauge(
            "tinyseek_prefix_cache_hit_rate", "Share of prompt tokens served from the prefix cache"
        )
        self.queue_depth = gauge("tinyseek_queue_depth", "Requests admitted and waiting to start")
        self.running = gauge("tinyseek_requests_running", "Requests generating now")
        self.cancelled = counter(
            "tinyseek_requests_cancelled", "Generations cancelled (client gone or shutdown)"
        )
        self.stream_errors = counter(
            "tinyseek_stream_errors", "Streams ended by an error event after their 200 was sent", ["route"]
        )
        self.ttft = latency(
            "tinyseek_time_to_first_token_seconds", "Time from admission to the first generated token"
        )
        self.latency = latency(
            "tinyseek_request_latency_seconds", "Time from admission to the last generated token"
        )

    def record_prompt(self, prompt_tokens: int, cache_hit_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.cache_hit_tokens.inc(cache_hit_tokens)
        self.cache_miss_tokens.inc(prompt_tokens - cache_hit_tokens)
        self._hits += cache_hit_tokens
        self._prompts += prompt_tokens
        self.cache_hit_rate.set(self._hits / self._prompts if self._prompts else 0.0)


class RequestCounter:
    """ASGI wrapper counting every HTTP response by route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before starting a response
        started = False

        async def counted_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
            if not started:  # the client left before any answer (nginx's 499), not a server error
                status = CLIENT_CLOSED
        except asyncio.CancelledError:  # cancelled because the client left (or shutdown)
            if not started:
                status = CLIENT_CLOSED
            raise
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route=route, status=str(status)).inc()
