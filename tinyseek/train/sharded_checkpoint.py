"""Run checkpoints under torchrun: DCP-sharded model and optimizer plus the trainer's own state.

Layout: `RUN_DIR/checkpoints/step-NNNNNNNN/` is a tinyseek.parallel DCP directory (every rank's
shards, `.metadata`, config.json) with, added inside the same atomic write, `trainer_state-rankR.pt`
per rank (scheduler, data position, step and token counts, that rank's RNG states) and the tokenizer
files; `RUN_DIR/checkpoints/latest` names the newest complete one. The final model directory
`RUN_DIR/model/` is the HF layout converted from the last checkpoint (+ tokenizer), the same files a
one-process run writes, so tinyseek.LLM and transformers load either alike.

Design choices:
- Nobody gathers the full model to save it: each rank writes its shards in parallel (DCP), and the
  checkpoint reloads into any FSDP/EP layout (the resumed launch may use another `--ep`).
- The trainer's state is per rank because RNG states are; a resumed launch with more ranks than the
  saved one falls back to rank 0's (scheduler, data position and counts are the same on every rank).
- Atomic as tinyseek.parallel.save_checkpoint is: the extra files are written before the rename, so a
  step directory is complete or absent and `latest` never names a partial one.
- Only the newest `keep` step directories stay; rank 0 prunes after the new one is in place.
- tinyseek.parallel.checkpoint is imported inside the functions: it imports tinyseek.train.atomic,
  whose package imports the trainer, which imports this module (a cycle at import time only).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tinyseek.tokenizer import Tokenizer
from tinyseek.train.atomic import atomic_directory
from tinyseek.train.run_checkpoint import CHECKPOINTS, list_checkpoints, rng_state

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def _state_file(directory: Path, rank: int) -> Path:
    return directory / f"trainer_state-rank{rank:05d}.pt"


def save_sharded(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                 tokenizer: Tokenizer, state: dict[str, Any], keep: int) -> Path:  # fmt: skip
    """Collective: every rank calls it. Writes `checkpoints/step-N` atomically, keeps the newest `keep`."""
    from tinyseek.parallel.checkpoint import save_checkpoint

    rank = dist.get_rank()

    def write_extra(tmp: Path) -> None:
        torch.save({**state, "rng": rng_state()}, _state_file(tmp, rank))
        if rank == 0:
            tokenizer.save_pretrained(tmp)

    root = run_dir / CHECKPOINTS
    final = save_checkpoint(root, step, model, optimizer, write_extra)
    if rank == 0:
        steps = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_sharded(run_dir: Path) -> Path:
    """The newest complete DCP checkpoint of a run, for --resume under torchrun."""
    from tinyseek.parallel.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir / CHECKPOINTS)
    if found is None:
        single = list_checkpoints(run_dir)
        hint = (
            f"; {single[-1]} was written by a one-process run: resume it without torchrun" if single else ""
        )
        raise FileNotFoundError(
            f"{run_dir / CHECKPOINTS}: no complete sharded checkpoint to resume from{hint}"
        )
    return found


def load_sharded(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Collective: model and optimizer shards from `directory`; returns this rank's trainer state."""
    from tinyseek.parallel.checkpoint import load_checkpoint

    load_checkpoint(directory, model, optimizer)
    own = _state_file(directory, dist.get_rank())
    file = own if own.is_file() else _state_file(directory, 0)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {directory} is not a tinyseek training checkpoint")
    # A file this trainer wrote (RNG tuples are Python objects), not a downloaded artifact.
    state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
    return state


def export_model_dir(checkpoint: Path, model_dir: Path, tokenizer: Tokenizer) -> None:
    """Rank 0: the HF model directory (weights from the DCP checkpoint, tokenizer) written atomically."""
    from tinyseek.parallel.checkpoint import convert_to_hf

    with atomic_directory(model_dir) as tmp:
        convert_to_hf(checkpoint, tmp)
        tokenizer.save_pretrained(tmp)
    log.info("wrote %s from %s", model_dir, checkpoint)
