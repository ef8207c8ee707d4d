"""Hugging Face safetensors <-> Transformer: names, sharding, FP8 dequantization.

Design choices:
- One table, `hf_tensors(model)`, maps every checkpoint name to the tensor (often a view into a
  stacked parameter) it fills; loading and saving both walk it, so they cannot disagree.
- Loading builds the model on the meta device, allocates it once in the target dtype, then copies
  tensor by tensor from the safetensors files: never two full copies in memory.
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
from pathlib import Path
from typing import cast

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tinyseek.config import ModelConfig
from tinyseek.model.moe import MoE
from tinyseek.model.rope import RotaryEmbedding
from tinyseek.model.transformer import MTPModule, Transformer

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
FP8_BLOCK = 128
# Stored for compatibility, recomputed or shared on our side.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def hf_tensors(model: Transformer) -> dict[str, torch.Tensor]:
    """Checkpoint name -> the tensor of `model` it is loaded into / saved from."""
    cfg = model.config
    out: dict[str, torch.Tensor] = {"model.embed_tokens.weight": model.embed_tokens.weight}

    def add_block(prefix: str, block: torch.nn.Module) -> None:
        for name, tensor in [*block.named_parameters(), *block.named_buffers()]:
            if ".experts." in f".{name}":
                continue
            out[f"{prefix}.{name}"] = tensor
        mlp = block.mlp  # type: ignore[attr-defined]
        if isinstance(mlp, MoE):
            inter = mlp.experts.down_proj.shape[-1]
            for e in range(mlp.n_routed_experts):
                out[f"{prefix}.mlp.experts.{e}.gate_proj.weight"] = mlp.experts.gate_up_proj[e, :inter]
                out[f"{prefix}.mlp.experts.{e}.up_proj.weight"] = mlp.experts.gate_up_proj[e, inter:]
                out[f"{prefix}.mlp.experts.{e}.down_proj.weight"] = mlp.experts.down_proj[e]

    for i, layer in enumerate(model.layers):
        add_block(f"model.layers.{i}", layer)
    out["model.norm.weight"] = model.norm.weight
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = model.lm_head.weight
    for d, mtp in enumerate(model.mtp):
        module = cast(MTPModule, mtp)
        prefix = f"model.layers.{cfg.num_hidden_layers + d}"
        out[f"{prefix}.enorm.weight"] = module.enorm.weight
        out[f"{prefix}.hnorm.weight"] = module.hnorm.weight
        out[f"{prefix}.eh_proj.weight"] = module.eh_proj.weight
        out[f"{prefix}.shared_head.norm.weight"] = module.shared_head_norm.weight
        add_block(prefix, module.block)
    return out


def mtp_copies(model: Transformer) -> dict[str, torch.Tensor]:
    """The embedding and head copies each MTP module stores in the released checkpoint format."""
    n = model.config.num_hidden_layers
    out = {}
    for d in range(len(model.mtp)):
        out[f"model.layers.{n + d}.embed_tokens.weight"] = model.embed_tokens.weight
        out[f"model.layers.{n + d}.shared_head.head.weight"] = model.lm_head.weight
    return out


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


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> Transformer:
    """Build a Transformer from a HF-format directory, tensor by tensor. Returns it in eval mode."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} does not exist")
    config = ModelConfig.from_pretrained(directory)
    weight_map = _weight_map(directory)
    mtp_prefix = f"model.layers.{config.num_hidden_layers}."
    if config.num_nextn_predict_layers and not any(k.startswith(mtp_prefix) for k in weight_map):
        log.warning("%s has no MTP weights (transformers writes none): loading with MTP off", directory)
        config = config.replace(num_nextn_predict_layers=0)
    quant = config.extra.pop("quantization_config", None)
    block = (quant or {}).get("weight_block_size", [FP8_BLOCK])[0]

    with torch.device("meta"):
        model = Transformer(config)
    model = model.to_dtype(dtype).to_empty(device=device)
    model.rotary = RotaryEmbedding(config).to(device)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    targets = hf_tensors(model)
    copies = set(mtp_copies(model))
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
                if name.endswith("weight_scale_inv") or name in copies or name.endswith(_IGNORED_SUFFIXES):
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
                        tensor, handles[weight_map[scale_name]].get_tensor(scale_name), block
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
    return model.eval()


# ---- saving ------------------------------------------------------------------------------------
def _write_atomic(tensors: dict[str, torch.Tensor], file: Path) -> None:
    tmp = file.with_name(file.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, file)


def save_model(model: Transformer, path: str | Path, max_shard_bytes: int = 5 * 2**30) -> Path:
    """Write config.json, generation_config.json and safetensors shards in the HF layout."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    copies = mtp_copies(model)
    tensors = {**hf_tensors(model), **copies}
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
        _write_atomic({n: t.clone() if n in copies else t for n, t in shard.items()}, directory / file)
    if len(files) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {
            "metadata": {"total_size": total},
            "weight_map": {n: f for f, names in zip(files, shards, strict=True) for n in names},
        }
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    config = model.config
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
