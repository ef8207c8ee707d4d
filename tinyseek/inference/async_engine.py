"""AsyncEngine: many asyncio consumers (the server's requests) over one Engine stepped in a thread.

Design choices:
- One background thread owns the step loop; it sleeps while the engine is idle and wakes on a new
  request. asyncio code never blocks on a forward: deltas reach each request's asyncio.Queue through
  `loop.call_soon_threadsafe`.
- `generate()` is an async iterator of Deltas for one request. Leaving it early (client disconnect,
  task cancelled, `aclose()`) aborts the request, which frees its cache blocks at once.
- If a step raises, every waiting consumer receives the error and their requests are aborted, so one
  bad step cannot wedge the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Sequence

from tinyseek.inference.engine import Engine
from tinyseek.inference.request import Delta
from tinyseek.inference.sampling import SamplingParams

log = logging.getLogger(__name__)


class AsyncEngine:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Delta | Exception]]] = {}
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="tinyseek-engine", daemon=True)
        self._thread.start()

    def _deliver(self, request_id: str, item: Delta | Exception) -> None:
        entry = self._queues.get(request_id)
        if entry is not None:
            loop, queue = entry
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def _loop(self) -> None:
        while not self._closed:
            if not self.engine.has_unfinished():
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                deltas = self.engine.step()
            except Exception as err:  # hand the failure to every consumer, then carry on empty
                log.exception("engine step failed; aborting %d requests", len(self._queues))
                for request_id in list(self._queues):
                    self._deliver(request_id, err)
                    self.engine.abort(request_id)
                continue
            for delta in deltas:
                self._deliver(delta.request_id, delta)

    async def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[Delta]:
        """Deltas of one request as the engine produces them; the last carries the RequestOutput."""
        if self._closed:
            raise RuntimeError("AsyncEngine is shut down")
        request_id = request_id or uuid.uuid4().hex
        queue: asyncio.Queue[Delta | Exception] = asyncio.Queue()
        self._queues[request_id] = (asyncio.get_running_loop(), queue)
        try:
            self.engine.add_request(prompt, params, request_id, stream_text=True)
            self._wake.set()
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item.request_output is not None:
                    return
        finally:
            self._queues.pop(request_id, None)
            self.engine.abort(request_id)

    def shutdown(self) -> None:
        """Stop the step loop (requests in flight are left as they are)."""
        self._closed = True
        self._wake.set()
        self._thread.join()
