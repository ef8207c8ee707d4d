"""The Hugging Face model directory: config.json, safetensors shards (+ index), FP8 dequantization.

Design choices:
- This module knows files, not modules: it fills and writes a table of checkpoint name -> tensor,
  which `Transformer.hf_tensors()` builds (often views into stacked parameters). Loading and saving
  both walk that table, so they cannot disagree; `Transformer.from_pretrained` / `save_pretrained`
  are the callers, and this module imports nothing of the model back.
- Loading copies tensor by tensor from the safetensors files into a model allocated once in the
  target dtype: never two full copies in memory.
- FP8 (e4m3) weights with `*.weight_scale_inv` are dequantized block by block (128x128) on load.
- Saving writes shards of at most `max_shard_bytes` (+ model.safetensors.index.json), each file written
  to a temporary name and renamed, plus the MTP modules' stored copies of embedding and head, as the
  released DeepSeek-V3 checkpoint has them. A checkpoint without MTP weights loads with MTP off.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Collection
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tinyseek.config import ModelConfig

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
FP8_BLOCK = 128
# Stored for compatibility, recomputed or shared on our side.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# ---- FP8 ---------------------------------------------------------------------------------------
def quantize_fp8(weight: torch.Tensor, block: int = FP8_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-wise e4m3 quantization as DeepSeek-V3 ships it: returns (q, scale_inv), W ≈ q * scale_inv."""
    rows, cols = weight.shape
    br, bc = math.ceil(rows / block), math.ceil(cols / block)
    padded = torch.zeros(br * block, bc * block, dtype=torch.float32)
    padded[:rows, :cols] = weight.float()
    tiles = padded.view(br, block, bc, block)
    amax = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale_inv = amax / torch.finfo(torch.float8_e4m3fn).max
    q = (tiles / scale_inv[:, None, :, None]).view(br * block, bc * block)[:rows, :cols]
    return q.to(torch.float8_e4m3fn), scale_inv


def dequantize_fp8(q: torch.Tensor, scale_inv: torch.Tensor, block: int = FP8_BLOCK) -> torch.Tensor:
    rows, cols = q.shape
    expected = (math.ceil(rows / block), math.ceil(cols / block))
    if tuple(scale_inv.shape) != expected:
        raise ValueError(
            f"weight_scale_inv shape {tuple(scale_inv.shape)} for weight {tuple(q.shape)}: expected {expected}"
        )
    scale = scale_inv.float().repeat_interleave(block, 0)[:rows].repeat_interleave(block, 1)[:, :cols]
    return q.float() * scale


# ---- loading -----------------------------------------------------------------------------------
def _weight_map(directory: Path) -> dict[str, str]:
    index = directory / INDEX_FILE
    if index.exists():
        return dict(json.loads(index.read_text())["weight_map"])
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {directory}")
    mapping = {}
    for file in files:
        with safe_open(file, "pt") as f:
            mapping.update({k: file.name for k in f.keys()})  # noqa: SIM118 (safe_open has no __iter__)
    return mapping


def read_config(directory: Path) -> tuple[ModelConfig, int]:
    """The config to build the model from, and the FP8 block size of its weights.

    MTP is off when the weights hold no MTP module (transformers writes none), and the
    quantization_config is dropped: the weights are dequantized on load, so a save must not claim FP8.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    config = ModelConfig.from_pretrained(directory)
    weight_map = _weight_map(
        directory
    )  # before the model is allocated: a directory without weights fails here
    mtp_prefix = f"model.layers.{config.num_hidden_layers}."
    if config.num_nextn_predict_layers and not any(k.startswith(mtp_prefix) for k in weight_map):
        log.warning("%s has no MTP weights (transformers writes none): loading with MTP off", directory)
        config = config.replace(num_nextn_predict_layers=0)
    quant = config.extra.pop("quantization_config", None)
    return config, (quant or {}).get("weight_block_size", [FP8_BLOCK])[0]


def load_tensors(
    directory: Path, targets: dict[str, torch.Tensor], stored_copies: Collection[str], fp8_block: int
) -> None:
    """Copy every checkpoint tensor into `targets[name]`; a tensor with no target, of another shape,
    or a target with no tensor is an error naming it. `stored_copies` are skipped (they alias others)."""
    weight_map = _weight_map(directory)
    filled: set[str] = set()
    by_file: dict[str, list[str]] = {}
    for name, file in weight_map.items():
        by_file.setdefault(file, []).append(name)
    handles = {}
    try:
        for file in by_file:
            handles[file] = safe_open(directory / file, "pt", device="cpu")
        for file, names in by_file.items():
            for name in names:
                if (
                    name.endswith("weight_scale_inv")
                    or name in stored_copies
                    or name.endswith(_IGNORED_SUFFIXES)
                ):
                    continue
                if name not in targets:
                    raise ValueError(
                        f"unexpected tensor {name!r} in {directory / file}: no such weight in this config"
                    )
                tensor = handles[file].get_tensor(name)
                if tensor.dtype == torch.float8_e4m3fn:
                    scale_name = name + "_scale_inv"
                    if scale_name not in weight_map:
                        raise ValueError(f"FP8 tensor {name!r} has no {scale_name!r}")
                    tensor = dequantize_fp8(
                        tensor, handles[weight_map[scale_name]].get_tensor(scale_name), fp8_block
                    )
                target = targets[name]
                if tuple(tensor.shape) != tuple(target.shape):
                    raise ValueError(
                        f"tensor {name!r} has shape {list(tensor.shape)}: expected {list(target.shape)} for this config"
                    )
                with torch.no_grad():
                    target.copy_(tensor)
                filled.add(name)
    finally:
        handles.clear()
    missing = [n for n in targets if n not in filled]
    if missing:
        shown = ", ".join(f"{n!r} (expected shape {list(targets[n].shape)})" for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"checkpoint {directory} is missing tensor {shown}{more}")


# ---- saving ------------------------------------------------------------------------------------
def _write_atomic(tensors: dict[str, torch.Tensor], file: Path) -> None:
    tmp = file.with_name(file.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, file)


def save_tensors(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    stored_copies: dict[str, torch.Tensor],
    config: ModelConfig,
    max_shard_bytes: int,
) -> Path:
    """Write config.json, generation_config.json and safetensors shards in the HF layout."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {**tensors, **stored_copies}
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    files = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    for stale in directory.glob("model*.safetensors"):
        if stale.name not in files:
            stale.unlink()
    (directory / INDEX_FILE).unlink(missing_ok=True)
    for file, names in zip(files, shards, strict=True):
        # Stored copies (MTP embedding/head) must not share memory with the originals in safetensors.
        shard = {n: tensors[n].detach().to("cpu").contiguous() for n in names}
        _write_atomic({n: t.clone() if n in stored_copies else t for n, t in shard.items()}, directory / file)
    if len(files) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {
            "metadata": {"total_size": total},
            "weight_map": {n: f for f, names in zip(files, shards, strict=True) for n in names},
        }
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(directory)
    generation = {
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.95,
    }
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return directory
