"""Run checkpoints: everything needed to continue a run exactly, written atomically.

Layout: `RUN_DIR/checkpoints/step-000100/` holds `model/` (the HF model directory: config.json,
safetensors in fp32, tokenizer files, generation_config.json: loadable by tinyseek.LLM and
transformers) and `trainer_state.pt` (optimizer, scheduler, RNG states of python/numpy/torch, the
packer's data position, step and token counts).

Design choices:
- Each checkpoint directory is written through `atomic_directory`, so it is complete or absent: a run
  killed at any point (SIGKILL included) resumes from the newest directory, which is always whole.
- Weights are saved in fp32 (the master weights) so a resumed run continues bit for bit on CPU.
- Only the newest `keep` checkpoints are kept; older ones are removed after a new one is in place.
- trainer_state.pt holds Python objects (RNG tuples), so it is loaded with weights_only=False: it is
  a file this trainer wrote, not a downloaded artifact.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinyseek.train.atomic import atomic_directory

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model_dir(directory: Path, model: Any, tokenizer: Any) -> None:
    """An HF model directory: weights, config, generation config and tokenizer."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def save_checkpoint(
    run_dir: Path, step: int, model: Any, tokenizer: Any, state: dict[str, Any], keep: int
) -> Path:
    """Write `checkpoints/step-N` atomically, then drop all but the newest `keep`."""
    final = run_dir / CHECKPOINTS / f"step-{step:06d}"
    with atomic_directory(final) as tmp:
        save_model_dir(tmp / MODEL_DIR, model, tokenizer)
        torch.save({**state, "rng": rng_state()}, tmp / STATE_FILE)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path:
    found = list_checkpoints(run_dir)
    if not found:
        hint = (
            ": its checkpoints are sharded (written under torchrun); resume it under torchrun"
            if (run_dir / CHECKPOINTS / "latest").is_file()
            else ""
        )
        raise FileNotFoundError(f"{run_dir / CHECKPOINTS}: no complete checkpoint to resume from{hint}")
    return found[-1]


def load_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
    return state
