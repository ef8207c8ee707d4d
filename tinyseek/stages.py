"""`StageRunner`: one run directory of resumable stages, the bookkeeping `r1zero` and `r1` share.

Design choices:
- A stage's output file is written atomically and is what marks it done; `stages.json` holds the
  seconds of every finished stage. `resume=True` skips a stage whose marker exists and whose seconds
  are recorded (a marker without seconds means the run died between the two writes: run it again).
- The run's settings (`recorded`: recipe and seed) go to `recipe.json` on the first start; a resume
  with other settings is refused, and without `resume` a non-empty directory is an error rather than
  a mix of two runs.
- Under torchrun every rank runs every stage; rank 0 alone writes the run-level files and hears
  `on_stage`, and barriers keep the others from reading them early.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tinyseek.checkpoint.run import write_text_atomically
from tinyseek.parallel.ranks import rank_and_world

StageHook = Callable[[str, str, dict[str, Any]], None]  # (stage, "start" | "done" | "skipped", info)
STAGES_FILE = "stages.json"
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class RunHooks:
    """What a caller hears of a run: `on_stage(stage, event, info)`, the trainer's per-step
    `pretrain_progress(step, max_steps, record)`, GRPO's progress bar; and `pretrain_threads`, torch's
    intra-op threads for pretraining (and in `tinyseek r1` SFT and distillation): their batched matmuls
    gain from a second core, decoding does not."""

    on_stage: StageHook | None = None
    pretrain_progress: Any = None
    show_progress: bool = False
    pretrain_threads: int | None = None


@contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: unchanged) for one stage, restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class StageInterrupted(RuntimeError):
    """A stage stopped at SIGINT/SIGTERM after checkpointing; `resume=True` continues it."""


class StageRunner:
    """Stage bookkeeping over `out`: done markers, seconds per stage, the recorded settings."""

    def __init__(self, out: Path, recorded: dict[str, Any], resume: bool, on_stage: StageHook | None):
        self.out, self.resume = out, resume
        self.recorded = json.loads(json.dumps(recorded))  # as stored: tuples become lists
        rank, self.world = rank_and_world()
        self.main = rank == 0
        quiet: StageHook = lambda stage, event, info: None  # noqa: E731
        self.on_stage = (on_stage or quiet) if self.main else quiet
        self.seconds: dict[str, float] = {}

    def start(self) -> None:
        """Check OUT against `resume` and the recorded settings, then record them."""
        recipe_file = self.out / RECIPE_FILE
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"{self.out} is a file: expected a run directory (--out)")
        if self.out.exists() and any(self.out.iterdir()):
            if not self.resume:
                raise ValueError(f"{self.out} is not empty: pass resume (--resume) or choose another --out")
            if recipe_file.is_file() and json.loads(recipe_file.read_text()) != self.recorded:
                raise ValueError(
                    f"{recipe_file}: the directory was started with another recipe or seed; "
                    "expected the same ones to resume (or choose another --out)"
                )
        self.barrier()  # every rank has looked at OUT before rank 0 writes into it
        if self.main and not recipe_file.is_file():  # a resumed run leaves it (and its mtime) alone
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomically(recipe_file, json.dumps(self.recorded, indent=2) + "\n")
        stages = self.out / STAGES_FILE
        if self.resume and stages.is_file():
            self.seconds = {k: float(v) for k, v in json.loads(stages.read_text()).items()}

    def stage(self, name: str, done: Path, body: Callable[[], dict[str, Any]]) -> None:
        """Run `body` unless `done` exists and we resume; record its seconds."""
        if self.resume and done.exists() and name in self.seconds:
            self.on_stage(name, "skipped", {"seconds": self.seconds[name]})
            return
        self.on_stage(name, "start", {})
        began = time.monotonic()
        info = body()
        self.seconds[name] = time.monotonic() - began
        if self.main:
            write_text_atomically(self.out / STAGES_FILE, json.dumps(self.seconds, indent=2) + "\n")
        self.barrier()  # the stage's files are in place before any rank reads them
        self.on_stage(name, "done", {"seconds": self.seconds[name], **info})

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
