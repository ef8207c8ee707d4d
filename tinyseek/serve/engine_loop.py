"""EngineLoop: the engine's step loop on a background thread, its deltas delivered to asyncio.

Design choices:
- `Engine.step()` holds the engine's lock for a whole forward, so the event loop must never call into
  the engine: adds and aborts go into an inbox the engine thread drains between steps, and each
  step's deltas come back in one `call_soon_threadsafe` call that routes them to per-request asyncio
  queues. The event loop stays responsive (health checks, new connections) while the model runs.
- A `Generation` is released explicitly (callers use try/finally): releasing it before its last
  delta (client gone, error, shutdown) aborts the request, which frees its cache blocks at once.
  Nothing relies on garbage collection of async generators.
- `admitted()` waits for the engine thread's answer to the add: bad requests the engine itself
  detects (ValueError from `add_request`) are raised in the caller's task before any response byte
  is sent, so they become 400s like the server's own checks, even for streaming requests.
- Backpressure is a count, not a hidden queue: `reserve(k)` refuses (QueueFull, answered 429 with
  Retry-After) when `k` more requests would exceed `max_queue` in flight (waiting or generating).
  Follow-up requests of an admitted choice (the answer phase of a reasoning budget) are not refused.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from tinyseek.inference.engine import Engine
from tinyseek.inference.request import Delta
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)


# What the engine thread sends a request: a Delta, an exception (refused / engine died), or None
# once `add_request` succeeded.
_Item: TypeAlias = "Delta | BaseException | None"


class QueueFull(Exception):
    """The server already has `max_queue` requests in flight."""


class EngineStopped(Exception):
    """The engine loop is shutting down (or died) and takes no new requests."""


@dataclass
class _Stream:
    queue: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    started: bool = False
    finished: bool = False


class EngineLoop:
    """Owns the engine thread; `generate` is the only way the server talks to the engine."""

    def __init__(self, engine: Engine, metrics: ServerMetrics, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue}: expected a positive integer")
        self.engine = engine
        self.metrics = metrics
        self.max_queue = max_queue
        self._streams: dict[str, _Stream] = {}
        self._inbox: list[tuple[str, str, Any]] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle (event-loop thread) ---------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="tinyseek-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Abort everything still in flight and join the engine thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        for stream in self._streams.values():
            stream.queue.put_nowait(EngineStopped("the server is shutting down"))

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    @property
    def accepting(self) -> bool:
        return not self._stopping and self._thread is not None and self._thread.is_alive()

    def reserve(self, count: int) -> None:
        """Raise QueueFull unless `count` more requests fit under `max_queue`."""
        if not self.accepting:
            raise EngineStopped("the engine is not running")
        if len(self._streams) + count > self.max_queue:
            raise QueueFull(f"{len(self._streams)} requests in flight, limit {self.max_queue}")

    def generate(self, prompt_ids: Sequence[int], params: SamplingParams) -> Generation:
        """Start one engine request (call `reserve` first for new API requests)."""
        if not self.accepting:
            raise EngineStopped("the engine is not running")
        request_id = f"srv-{next(self._ids)}"
        self._streams[request_id] = _Stream()
        self._post("add", request_id, (list(prompt_ids), params))
        self._update_gauges()
        return Generation(self, request_id)

    # -- event-loop side helpers ---------------------------------------------------------------

    def _post(self, kind: str, request_id: str, payload: Any = None) -> None:
        with self._wake:
            self._inbox.append((kind, request_id, payload))
            self._wake.notify()

    def _release(self, request_id: str) -> None:
        stream = self._streams.pop(request_id, None)
        if stream is not None and not stream.finished:
            self._post("abort", request_id)
            self.metrics.cancelled.inc()
        self._update_gauges()

    def _deliver(self, items: list[tuple[str, _Item]]) -> None:
        for request_id, item in items:
            stream = self._streams.get(request_id)
            if stream is None:
                continue
            if isinstance(item, Delta):
                stream.started = True
                stream.finished = item.request_output is not None
            stream.queue.put_nowait(item)
        self._update_gauges()

    def _update_gauges(self) -> None:
        running = sum(s.started for s in self._streams.values())
        self.metrics.running.set(running)
        self.metrics.queue_depth.set(len(self._streams) - running)

    def _send(self, items: list[tuple[str, _Item]]) -> None:
        if items and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._deliver, items)

    # -- engine thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    while not (self._inbox or self._stopping or self.engine.has_unfinished()):
                        self._wake.wait()
                    inbox, self._inbox = self._inbox, []
                    stopping = self._stopping
                replies = self._apply(inbox)
                if stopping:
                    for request_id in list(self.engine.requests):
                        self.engine.abort(request_id)
                    return
                deltas = self.engine.step() if self.engine.has_unfinished() else []
                self._send(replies + [(d.request_id, d) for d in deltas])
        except Exception as err:  # a bug in the engine: fail every request, refuse new ones
            log.exception("engine loop died")
            with self._wake:
                self._stopping = True
            self._send([(rid, RuntimeError(f"engine failure: {err}")) for rid in list(self._streams)])

    def _apply(self, inbox: list[tuple[str, str, Any]]) -> list[tuple[str, _Item]]:
        replies: list[tuple[str, _Item]] = []
        for kind, request_id, payload in inbox:
            if kind == "abort":
                self.engine.abort(request_id)
                continue
            prompt_ids, params = payload
            try:
                self.engine.add_request(prompt_ids, params, request_id=request_id, stream_text=True)
            except ValueError as err:
                replies.append((request_id, err))
            else:
                replies.append((request_id, None))
        return replies


class Generation:
    """One engine request seen from the event loop: `admitted()`, then `deltas()`, always `release()`."""

    def __init__(self, loop: EngineLoop, request_id: str) -> None:
        self.loop = loop
        self.request_id = request_id

    async def admitted(self) -> None:
        """Wait until the engine took the request; raises the engine's ValueError if it refused."""
        stream = self.loop._streams[self.request_id]
        item = await stream.queue.get()
        if isinstance(item, BaseException):
            raise item

    async def deltas(self) -> AsyncIterator[Delta]:
        stream = self.loop._streams[self.request_id]
        while True:
            item = await stream.queue.get()
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Delta)
            yield item
            if item.request_output is not None:
                return

    def release(self) -> None:
        """Forget the request; if it has not finished, abort it in the engine (frees its cache)."""
        self.loop._release(self.request_id)
