"""GRPO checkpoints: the policy as an HF model directory plus what `--resume` needs to continue.

Layout of `RUN_DIR/checkpoints/step-000010/`: config.json, model.safetensors, generation_config.json,
tokenizer.json, tokenizer_config.json (so the directory loads with `tinyseek.LLM` and `tinyseek serve`
as is), `trainer_state.pt` (step, prompts drawn, optimizer, RNG, config) and, when β > 0, `reference/`
(the frozen reference policy, which must stay the initial one across resumes).

Design choices:
- Every checkpoint is written through `atomic_directory`: a run killed while saving keeps the previous
  checkpoint intact, and `latest_checkpoint` only ever sees complete ones.
- Only the newest `keep` checkpoints are kept; the final model is a separate directory (`RUN_DIR/final`).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from tinyseek.model.transformer import Transformer
from tinyseek.train.atomic import atomic_directory

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
REFERENCE_DIR = "reference"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def save_policy(directory: str | Path, model: Transformer, tokenizer: Any) -> Path:
    """Write the policy and its tokenizer as an HF model directory, atomically."""
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(directory)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: Transformer,
    tokenizer: Any,
    state: dict[str, Any],
    reference: Transformer | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically and prune all but the newest `keep` ones."""
    final = checkpoint_dir(run_dir, step)
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if reference is not None:
            reference.save_pretrained(tmp / REFERENCE_DIR)
        torch.save(state, tmp / STATE_FILE)
    log.info("checkpoint saved: %s", final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def load_state(checkpoint: str | Path) -> dict[str, Any]:
    file = Path(checkpoint) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file}: not a GRPO checkpoint (expected {STATE_FILE})")
    state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
    return state
