"""MetricsLogger: one JSON line per step in RUN_DIR/metrics.jsonl, mirrored to TensorBoard.

Design choices:
- JSONL is the source of truth (plots, `tinyseek cost --measured` and reports read it); each line is
  flushed at once so a killed run keeps every logged step. TensorBoard is a mirror, optional.
- A resumed run appends; lines whose step is at or past the resume step are dropped first, so the file
  never holds a step twice.
- Only numbers go to TensorBoard; strings and other values stay in the JSONL.
- A missing TensorBoard is said once per process (a warning with the install command), not silently
  dropped and not repeated for every run of a sweep.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


@functools.cache
def _warn_no_tensorboard(reason: str) -> None:
    log.warning(
        "TensorBoard logging is off (%s): metrics go to %s only; `pip install tensorboard` to mirror them",
        reason, METRICS_FILE,
    )  # fmt: skip


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl, in order."""
    file = Path(run_dir) / METRICS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no metrics log (expected a run directory written by tinyseek)")
    records = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{file}:{n}: not JSON ({err.msg})") from None
    return records


class MetricsLogger:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.file = self.run_dir / METRICS_FILE
        if resume_step is not None and self.file.is_file():
            kept = [r for r in read_metrics(self.run_dir) if r.get("step", -1) < resume_step]
            self.file.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_step is None and self.file.is_file():
            self.file.unlink()
        self._out = open(self.file, "a")  # noqa: SIM115 - closed by close()
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError as err:  # a dependency, but a stripped install still logs JSONL
                _warn_no_tensorboard(str(err))

    def log(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        record = {"step": step, "time": time.time(), **metrics}
        self._out.write(json.dumps(record, default=_jsonable) + "\n")
        self._out.flush()
        if self._writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(key, value, step)
        return record

    def close(self) -> None:
        self._out.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
