"""Run checkpoints: everything a run needs to continue exactly, written so it is complete or absent.

The one checkpoint module of every long-running command: pretraining, SFT and distillation (one
process or torchrun), GRPO, and the DCP checkpoints of tinyseek.parallel.

Layout: `RUN_DIR/checkpoints/step-N/`, the trainer's state beside the weights.
- One process (six-digit N): the weights as an HF model directory, loadable by tinyseek.LLM and
  transformers (`model/` for pretraining and SFT; the step directory itself for GRPO, plus
  `reference/` when β > 0), and `trainer_state.pt` (optimizer, schedule, data position, counts, RNG).
- Sharded, under torchrun (eight-digit N): a DCP directory (every rank's shards, `.metadata`,
  config.json), `trainer_state-rankR.pt` per rank and the tokenizer files; `checkpoints/latest` names
  the newest. `convert_to_hf` turns one into the HF layout a one-process run writes.

Design choices:
- Atomic: a directory is written into a hidden sibling (`.NAME.tmp-PID`), fsync'ed, then renamed into
  place, so a run killed at any instant (SIGKILL included) leaves its previous checkpoint untouched.
  Replacing a directory renames the old one aside first (`.NAME.old`, cleared by the next write). A
  single file (a report, traces, `latest`) goes through a temporary sibling and one `os.replace`.
- `latest_checkpoint(root)` is the one answer to "where does a resumed run start": the directory
  `latest` names (sharded runs), else the newest step directory holding a trainer state; None if none.
- Sharded: nobody gathers the full model; every rank writes its shards in parallel (DCP). The state
  dict comes from `get_state_dict`, so keys are the unsharded model's names and tensors carry global
  shapes: a checkpoint written by N ranks in any FSDP/EP layout loads into M ranks, or into one
  process with no process group. Rank 0 opens the atomic directory and broadcasts its path, all ranks
  save into it, and after a barrier rank 0 renames it and rewrites `latest`; all ranks must see one
  filesystem (as DCP's FileSystemWriter requires anyway).
- The trainer state is per rank under torchrun because RNG states are; a resumed launch with more
  ranks than the saved one falls back to rank 0's (schedule, data position and counts are shared).
- Weights are saved in fp32 (the master weights), so a resumed run continues bit for bit on CPU.
- Only the newest `keep` step directories stay, pruned once the new one is in place (by rank 0).
- Trainer states hold Python objects (RNG tuples), so they load with weights_only=False: they are
  files this run wrote, not downloaded artifacts.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from tinyseek.config import ModelConfig
from tinyseek.model.rope import RotaryEmbedding
from tinyseek.model.transformer import Transformer

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
MODEL_DIR = "model"
REFERENCE_DIR = "reference"
STATE_FILE = "trainer_state.pt"
LATEST = "latest"
METADATA = ".metadata"
_STEP_DIR = re.compile(r"^step-(\d+)$")


# ---- atomic writes -----------------------------------------------------------------------------
def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on a clean exit it becomes `final` (replacing it), else it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomically(final: str | Path, text: str) -> None:
    """Write `text` to `final` through a fsync'ed temporary sibling and one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---- step directories --------------------------------------------------------------------------
def step_directory(root: str | Path, step: int, sharded: bool = False) -> Path:
    """ROOT/step-N: eight digits for a sharded (DCP) checkpoint, six for a one-process one."""
    return Path(root) / f"step-{step:0{8 if sharded else 6}d}"


def is_sharded(directory: str | Path) -> bool:
    """Whether a step directory is a DCP checkpoint (written under torchrun)."""
    return (Path(directory) / METADATA).exists()


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete step directories under ROOT (one-process or sharded), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and ((p / STATE_FILE).is_file() or is_sharded(p))
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ROOT (a run's `checkpoints/`), or None when there is none.

    A sharded run's `latest` file names it (an error when it names an incomplete directory); otherwise
    the step directory with the highest step wins."""
    pointer = Path(root) / LATEST
    if pointer.is_file():
        directory = Path(root) / pointer.read_text().strip()
        if not is_sharded(directory):
            raise FileNotFoundError(f"{pointer} names {directory}, which has no {METADATA}")
        return directory
    found = list_checkpoints(root)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A DCP step directory itself, or a root whose `latest` names one."""
    path = Path(path)
    if is_sharded(path):
        return path
    found = latest_checkpoint(path) if (path / LATEST).is_file() else None
    if found is None:
        raise FileNotFoundError(
            f"{path} is neither a DCP checkpoint (no {METADATA}) nor a root with {LATEST}"
        )
    return found


def prune(root: str | Path, keep: int) -> None:
    """Remove all but the newest `keep` complete step directories."""
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ---- trainer state -----------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states: what a resumed run needs to draw the same numbers."""
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


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _rank_state_file(directory: Path, rank: int) -> Path:
    return directory / f"trainer_state-rank{rank:05d}.pt"


def load_state(checkpoint: str | Path, sharded: bool = False) -> dict[str, Any]:
    """A checkpoint's trainer state: `trainer_state.pt`, or for a sharded checkpoint this process's
    rank's (rank 0's when the saving launch had fewer ranks)."""
    directory = Path(checkpoint)
    file = directory / STATE_FILE
    if sharded:
        file = _rank_state_file(directory, _rank())
        file = file if file.is_file() else _rank_state_file(directory, 0)
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {directory} is not a tinyseek training checkpoint")
    state: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
    return state


# ---- one process -------------------------------------------------------------------------------
def _write_model_dir(directory: Path, model: Transformer, tokenizer: Any) -> None:
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)


def save_model_dir(directory: str | Path, model: Transformer, tokenizer: Any) -> Path:
    """An HF model directory (weights, config, generation config, tokenizer), written atomically."""
    with atomic_directory(directory) as tmp:
        _write_model_dir(tmp, model, tokenizer)
    return Path(directory)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: Transformer,
    tokenizer: Any,
    state: dict[str, Any],
    keep: int,
    *,
    model_dir: str = MODEL_DIR,
    reference: Transformer | None = None,
) -> Path:
    """Write ROOT/step-N atomically: the model (+ tokenizer) under `model_dir` ("" = the step directory
    itself), the frozen `reference` policy if any, the trainer `state`; then keep the newest `keep`."""
    final = step_directory(root, step)
    with atomic_directory(final) as tmp:
        _write_model_dir(tmp / model_dir, model, tokenizer)
        if reference is not None:
            reference.save_pretrained(tmp / REFERENCE_DIR)
        torch.save(state, tmp / STATE_FILE)
    prune(root, keep)
    log.info("saved step %d to %s", step, final)
    return final


# ---- sharded (DCP, under torchrun) -------------------------------------------------------------
def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _share_path(path: Path | None) -> str:
    box = [str(path) if path is not None else ""]
    if _distributed():
        dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def _single_process_ok() -> Iterator[None]:
    """DCP warns whenever it runs without a process group; in one process that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is (disabled, )?unavailable or uninit")
        yield


def _dcp_state(model: nn.Module, optimizer: torch.optim.Optimizer | None, step: int) -> dict[str, Any]:
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [])
    state: dict[str, Any] = {"model": model_sd, "step": torch.tensor(step)}
    if optimizer is not None:
        state["optimizer"] = optim_sd
    return state


def save_sharded(
    root: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    tokenizer: Any = None,
    state: dict[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Collective: every rank calls it. Writes ROOT/step-N atomically, then points ROOT/latest at it.

    Inside the same atomic write: config.json, each rank's trainer `state` (when given) and the
    tokenizer files (rank 0). With `keep`, rank 0 then removes all but the newest `keep` steps."""
    shards = _dcp_state(model, optimizer, step)
    rank = _rank()
    final = step_directory(root, step, sharded=True)

    def write(tmp: Path) -> None:
        with _single_process_ok():
            dcp.save(shards, checkpoint_id=tmp)  # collective: a failure on any rank raises on all
        if state is not None:
            torch.save(state, _rank_state_file(tmp, rank))
        if tokenizer is not None and rank == 0:
            tokenizer.save_pretrained(tmp)
        _barrier()  # every rank's files are written (dcp.save's metadata came last)

    if rank == 0:
        with atomic_directory(final) as tmp:
            config = getattr(model, "config", None)
            if isinstance(config, ModelConfig):
                config.save_pretrained(tmp)
            _share_path(tmp)
            write(tmp)
        write_text_atomically(Path(root) / LATEST, final.name + "\n")
        if keep is not None:
            prune(root, keep)
    else:
        write(Path(_share_path(None)))
    _barrier()  # nobody returns before the rename: a following load sees the new step
    log.info("saved step %d to %s", step, final)
    return final


def load_sharded(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load a step directory (or ROOT's latest) into `model` (+ optimizer); returns the step, 0 if none.

    Works on any layout (FSDP/EP parallelized on any number of ranks, or a plain model in one process)."""
    path = Path(path)
    if not is_sharded(path) and latest_checkpoint(path) is None:
        return 0
    directory = resolve_checkpoint(path)
    state = _dcp_state(model, optimizer, 0)
    with _single_process_ok():
        dcp.load(state, checkpoint_id=directory)
    set_state_dict(
        model,
        optimizer if optimizer is not None else [],
        model_state_dict=state["model"],
        optim_state_dict=state.get("optimizer", {}),
        options=StateDictOptions(strict=True),
    )
    step = int(state["step"])
    log.info("loaded step %d from %s", step, directory)
    return step


def model_from_checkpoint(path: str | Path, config: ModelConfig | None = None) -> Transformer:
    """A Transformer (fp32, CPU, eval mode) from a DCP checkpoint; config from the checkpoint by default.

    The read is this process's alone (`no_dist`), also when a process group exists (rank 0 exporting
    the final model under torchrun): not a collective the other ranks would have to join."""
    directory = resolve_checkpoint(path)
    if config is None:
        if not (directory / "config.json").exists():
            raise FileNotFoundError(f"{directory} has no config.json: pass the model config explicitly")
        config = ModelConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = Transformer(config)
    model = model.to_empty(device="cpu")
    model.rotary = RotaryEmbedding(config)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    state = {"model": model.state_dict()}
    with _single_process_ok():
        dcp.load(state, checkpoint_id=directory, no_dist=True)
    model.load_state_dict(state["model"], strict=True)
    return model.eval()


def convert_to_hf(path: str | Path, out_dir: str | Path, config: ModelConfig | None = None) -> Path:
    """DCP checkpoint -> HF layout (config.json + safetensors) that Transformer.from_pretrained and transformers load."""
    return model_from_checkpoint(path, config).save_pretrained(out_dir)


def export_model_dir(checkpoint: Path, model_dir: Path, tokenizer: Any) -> Path:
    """Rank 0: the HF model directory (weights from the DCP checkpoint, tokenizer) written atomically."""
    out = save_model_dir(model_dir, model_from_checkpoint(checkpoint), tokenizer)
    log.info("wrote %s from %s", model_dir, checkpoint)
    return out
