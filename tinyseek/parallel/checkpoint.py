"""Sharded training checkpoints with torch.distributed.checkpoint (DCP): model, optimizer, step.

Layout under a checkpoint root:

    ROOT/step-00000100/    a DCP directory (.metadata + one __R_0.distcp file per rank) + config.json
    ROOT/latest            text file naming the newest complete step directory

Design choices:
- Every rank writes its own shards in parallel (DCP); the state dict comes from
  `torch.distributed.checkpoint.state_dict.get_state_dict`, so keys are the unsharded model's FQNs and
  tensors carry their global shapes: a checkpoint written by N ranks (any FSDP/EP layout) loads into M
  ranks, or into one process with no process group at all.
- Atomic: rank 0 opens `atomic_directory` (a hidden temporary sibling) and broadcasts its path; all
  ranks save into it; after a barrier rank 0 fsyncs and renames it into place, then rewrites `latest`
  (temporary file + os.replace). A save killed at any instant leaves the previous step directory and
  `latest` untouched; `latest` never names a directory that is not complete. All ranks must see the
  same filesystem (as DCP's FileSystemWriter requires anyway).
- `config.json` is stored beside the shards, so conversion to the HF layout needs nothing else.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from tinyseek.config import ModelConfig
from tinyseek.model.rope import RotaryEmbedding
from tinyseek.model.transformer import Transformer
from tinyseek.train.atomic import atomic_directory

log = logging.getLogger(__name__)

LATEST = "latest"
METADATA = ".metadata"


def step_directory(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def latest_checkpoint(root: str | Path) -> Path | None:
    """The step directory `ROOT/latest` names, or None when no checkpoint was completed yet."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    directory = Path(root) / pointer.read_text().strip()
    if not (directory / METADATA).exists():
        raise FileNotFoundError(f"{pointer} names {directory}, which has no {METADATA}")
    return directory


def resolve_checkpoint(path: str | Path) -> Path:
    """A DCP directory itself, or a root whose `latest` names one."""
    path = Path(path)
    if (path / METADATA).exists():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(
            f"{path} is neither a DCP checkpoint (no {METADATA}) nor a root with {LATEST}"
        )
    return found


def save_checkpoint(
    root: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Collective: every rank calls it. Writes ROOT/step-N atomically, then points ROOT/latest at it.

    `write_extra(tmp_dir)` runs on every rank after its shards are written and before the rename, so
    files a caller adds (a trainer's per-rank state, a tokenizer) are part of the same atomic step;
    names must not collide across ranks. Older step directories are kept; pruning is the caller's."""
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [])
    state: dict[str, Any] = {"model": model_sd, "step": torch.tensor(step)}
    if optimizer is not None:
        state["optimizer"] = optim_sd
    final = step_directory(root, step)
    if _rank() == 0:
        with atomic_directory(final) as tmp:
            config = getattr(model, "config", None)
            if isinstance(config, ModelConfig):
                config.save_pretrained(tmp)
            _share_path(tmp)
            with _single_process_ok():
                dcp.save(state, checkpoint_id=tmp)  # collective: a failure on any rank raises on all
            if write_extra is not None:
                write_extra(tmp)
            _barrier()  # every rank's shards are written (dcp.save's metadata came last)
        _write_latest(Path(root), final.name)
    else:
        tmp = Path(_share_path(None))
        dcp.save(state, checkpoint_id=tmp)
        if write_extra is not None:
            write_extra(tmp)
        _barrier()
    _barrier()  # nobody returns before the rename: a following load sees the new step
    log.info("saved step %d to %s", step, final)
    return final


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


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST}.tmp-{os.getpid()}"
    tmp.write_text(name + "\n")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, root / LATEST)


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Load a step directory (or ROOT's latest) into `model` (+ optimizer); returns the step, 0 if none.

    Works on any layout (FSDP/EP parallelized on any number of ranks, or a plain model in one process)."""
    path = Path(path)
    if not (path / METADATA).exists() and latest_checkpoint(path) is None:
        return 0
    directory = resolve_checkpoint(path)
    model_sd, optim_sd = get_state_dict(model, optimizer if optimizer is not None else [])
    state: dict[str, Any] = {"model": model_sd, "step": torch.tensor(0)}
    if optimizer is not None:
        state["optimizer"] = optim_sd
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


def load_model_weights(path: str | Path, model: nn.Module) -> None:
    """Fill a plain (unsharded) model from a DCP checkpoint in this one process: no optimizer, no ranks.

    `no_dist`: also when a process group exists (rank 0 exporting the final model under torchrun),
    the read is this process's alone, not a collective the other ranks would have to join."""
    directory = resolve_checkpoint(path)
    state = {"model": model.state_dict()}
    with _single_process_ok():
        dcp.load(state, checkpoint_id=directory, no_dist=True)
    model.load_state_dict(state["model"], strict=True)


def model_from_checkpoint(path: str | Path, config: ModelConfig | None = None) -> Transformer:
    """Build a Transformer (fp32, CPU, eval mode) from a DCP checkpoint; config from the checkpoint by default."""
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
    load_model_weights(directory, model)
    return model.eval()


def convert_to_hf(path: str | Path, out_dir: str | Path, config: ModelConfig | None = None) -> Path:
    """DCP checkpoint -> HF layout (config.json + safetensors) that Transformer.from_pretrained and transformers load."""
    return model_from_checkpoint(path, config).save_pretrained(out_dir)
