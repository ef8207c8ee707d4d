"""The stop signal every long-running command shares (pretrain, SFT, distill, GRPO, r1zero).

SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice) only records its name: the loop reads it between
steps, so the step in flight finishes and a checkpoint is written before the run returns. The first
signal also puts the previous handlers back, so a second one stops the process at once (the default
behaviour), for a user who does not want to wait for the save. Handlers are installed on the main
thread only (Python allows no other); elsewhere the flag simply never rises.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """`with StopSignal() as stop:` ... `if stop.received:` (the signal's name, e.g. "SIGTERM")."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        log.warning("%s received: finishing this step, saving a checkpoint, then stopping", self.received)
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._restore()
