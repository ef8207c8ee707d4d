"""torchrun script (2 gloo ranks): FSDP2 and FSDP2 + EP losses equal one process's; DCP save/resume.

Launched by tests/test_parallel_dist.py as
    python -m torch.distributed.run --nproc-per-node=2 tests/dist/parallel_parity.py OUT_DIR
Everything is in one launch because each launch costs seconds of start-up. Rank 0 writes
OUT_DIR/results.json (losses, resume losses, error messages) and OUT_DIR/full_ep{1,2}.pt (the trained
weights, gathered) for the pytest side to compare with a one-process load of the DCP checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fixtures import tiny_config  # noqa: E402

from tinyseek.checkpoint.run import load_sharded, save_sharded, step_directory  # noqa: E402
from tinyseek.model.transformer import Transformer  # noqa: E402
from tinyseek.parallel import (  # noqa: E402
    ParallelDims,
    build_mesh,
    clip_grad_norm_,
    init_distributed,
    mean_over_ranks,
    parallelize,
)

STEPS, SAVE_AT, BATCH, LENGTH, SEED = 5, 3, 4, 16, 0
CONFIG = tiny_config(n_routed_experts=8, n_group=2, topk_group=2, num_experts_per_tok=2)
TIED = CONFIG.replace(tie_word_embeddings=True)
MTP_WEIGHT = 0.3
MAX_NORM = 0.5  # below the first steps' gradient norms: clipping is active, so its scale is tested


def batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return [torch.randint(0, CONFIG.vocab_size, (BATCH, LENGTH), generator=g) for _ in range(STEPS)]


# Model variants: (config, skewed). Skewed routing biases every token to experts [0, E/2), so with EP(2)
# rank 1's experts receive no rows at all (routing collapse, early training): empty exchanges, zero grads.
VARIANTS = {"untied": (CONFIG, False), "tied": (TIED, False), "skewed": (CONFIG, True)}


def build(variant: str, seed: int = SEED) -> Transformer:
    config, skewed = VARIANTS[variant]
    torch.manual_seed(seed)
    model = Transformer(config)
    if skewed:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name.endswith("e_score_correction_bias"):
                    buf[: config.n_routed_experts // 2] = 10.0
    return model


def loss_of(model: Transformer, ids: torch.Tensor) -> torch.Tensor:
    """Next-token CE plus the MTP depth-1 CE, as a trainer computes them (hidden states, head, MTP)."""
    hidden = model.hidden_states(ids)
    logits = model.lm_head(hidden).float()  # CE in fp32 also under the bf16 policy
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    (mtp,) = model.mtp_hidden_states(hidden, ids)
    mtp_logits = model.lm_head(mtp[:, :-1]).float()
    return loss + MTP_WEIGHT * F.cross_entropy(mtp_logits.flatten(0, 1), ids[:, 2:].flatten())


def optimizer_for(model: Transformer) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)


def full_grads(model: Transformer) -> dict[str, torch.Tensor]:
    """Every parameter's gradient as one process would hold it (DTensor shards gathered)."""
    out = {}
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        grad = param.grad
        out[name] = grad.full_tensor() if isinstance(grad, DTensor) else grad.clone()
    return out


def train_step(
    model: Transformer,
    optimizer: torch.optim.Optimizer,
    ids: torch.Tensor,
    norms: list[float],
    grads: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One clipped AdamW step; appends the gradient norm to `norms`; fills `grads` with the gathered
    gradients when given (AdamW hides their scale)."""
    loss = loss_of(model, ids)
    loss.backward()
    if grads is not None:
        grads.update(full_grads(model))
    norms.append(clip_grad_norm_(model.parameters(), MAX_NORM).item())
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def reference(variant: str, data: list[torch.Tensor]) -> dict[str, Any]:
    """One process on the whole global batch: per-step losses, first-step gradients, final logits."""
    model = build(variant)
    opt = optimizer_for(model)
    grads: dict[str, torch.Tensor] = {}
    norms: list[float] = []
    losses = [
        train_step(model, opt, ids, norms, grads if i == 0 else None).item() for i, ids in enumerate(data)
    ]
    with torch.no_grad():
        logits = model(data[0])
    return {"losses": losses, "grads": grads, "eval": logits, "norms": norms}


def run_layout(
    variant: str,
    ep: int,
    data: list[torch.Tensor],
    ref: dict[str, Any] | None,
    save_root: Path | None,
    param_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """The same training on `world` ranks with FSDP2 (+ EP when ep > 1); rank 0 compares with `ref`."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = build_mesh(ParallelDims(world_size=world, ep=ep), "cpu")
    model = parallelize(build(variant), mesh, param_dtype=param_dtype)
    opt = optimizer_for(model)
    losses, grads, norms = [], {}, []
    for step, ids in enumerate(data, start=1):
        local = ids[rank::world]  # this rank's share of the global batch
        loss = train_step(model, opt, local, norms, grads if step == 1 else None)
        losses.append(mean_over_ranks(loss, mesh).item())
        if save_root is not None and step in (SAVE_AT, STEPS):
            save_sharded(save_root, step, model, opt)
    with torch.no_grad():  # plain forward() on the sharded model, rows of this rank
        logits = model(data[0][rank::world])
    gathered = [torch.empty_like(logits) for _ in range(world)]
    dist.all_gather(gathered, logits)
    out: dict[str, Any] = {"losses": losses, "model": model, "mesh": mesh, "norms": norms}
    out["stored_dtypes"] = sorted({str(p.dtype) for g in opt.param_groups for p in g["params"]})
    if ref is not None:
        n = len(losses)  # the extra layouts run fewer steps than the reference
        out["loss_diff"] = max(abs(a - b) for a, b in zip(losses, ref["losses"][:n], strict=True))
        out["norm_diff"] = max(abs(a - b) / b for a, b in zip(norms, ref["norms"][:n], strict=True))
        out["grad_diff"] = {  # relative to each gradient's largest entry
            name: (grad - ref["grads"][name]).abs().max().item()
            / max(ref["grads"][name].abs().max().item(), 1e-30)
            for name, grad in grads.items()
        }
        logits = torch.stack(gathered, 1).flatten(0, 1)
        out["eval_diff"] = (logits.float() - ref["eval"]).abs().max().item()
        out["eval_dtype"] = str(logits.dtype)
    return out


def main(out: Path, eps: list[int], extras: bool) -> None:
    init_distributed("cpu")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = batches()
    results: dict[str, Any] = {"world": world, "layouts": {}}
    # (layout name, model variant, ep, param dtype, steps); the last plain one writes checkpoints (3, 5).
    Layout = tuple[str, str, int, torch.dtype | None, int]
    layouts: list[Layout] = [(f"ep{ep}", "untied", ep, None, STEPS) for ep in eps]
    saver = layouts[-1][0]
    if extras:  # 2 steps each: enough to see a wrong gradient, cheaper to launch
        layouts += [
            ("tied_ep1", "tied", 1, None, 2),
            (f"skewed_ep{eps[-1]}", "skewed", eps[-1], None, 2),
            # The GPU policy (bf16 compute, fp32 reduce) run on gloo: close, not equal.
            (f"bf16_ep{eps[-1]}", "untied", eps[-1], torch.bfloat16, 2),
        ]
    steps_of = {v: max(n for _, var, _, _, n in layouts if var == v) for _, v, _, _, _ in layouts}
    started = time.perf_counter()
    refs = {v: reference(v, data[:n]) if rank == 0 else None for v, n in sorted(steps_of.items())}
    results["reference_seconds"] = time.perf_counter() - started
    if rank == 0:
        results["single"] = refs["untied"]["losses"]
        results["single_norms"] = refs["untied"]["norms"]
        if "skewed" in refs:  # rank 1's experts really got nothing: their gradients are exactly zero
            half = CONFIG.n_routed_experts // 2
            expert_grads = [g for n, g in refs["skewed"]["grads"].items() if ".experts." in n]
            results["skewed_idle_grad"] = max(g[half:].abs().max().item() for g in expert_grads)
            results["skewed_busy_grad"] = min(g[:half].abs().max().item() for g in expert_grads)
    last = None
    for name, variant, ep, dtype, steps in layouts:
        started = time.perf_counter()
        save_root = out / "ckpt" if name == saver else None
        result = run_layout(variant, ep, data[:steps], refs[variant], save_root, dtype)
        last = result if name == saver else last
        results["layouts"][name] = {k: v for k, v in result.items() if k not in ("model", "mesh")}
        results["layouts"][name]["seconds"] = time.perf_counter() - started
    assert last is not None
    full = get_model_state_dict(last["model"], options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save(full, out / "full.pt")

    # Resume: a differently initialized model + fresh optimizer, loaded from the step-3 checkpoint.
    mesh = last["mesh"]
    model = parallelize(build("untied", seed=SEED + 1), mesh)
    opt = optimizer_for(model)
    start = load_sharded(step_directory(out / "ckpt", SAVE_AT, sharded=True), model, opt)
    results["resumed_at"] = start
    results["saved_losses"] = last["losses"]
    results["resumed"] = [
        mean_over_ranks(train_step(model, opt, ids[rank::world], []), mesh).item() for ids in data[start:]
    ]

    errors = {}
    try:
        ParallelDims(world_size=world, ep=world + 1)
    except ValueError as err:
        errors["ep_world"] = str(err)
    try:
        odd = tiny_config(n_routed_experts=3, n_group=1, topk_group=1, num_experts_per_tok=2)
        torch.manual_seed(SEED)
        parallelize(Transformer(odd), mesh)
    except ValueError as err:
        errors["ep_experts"] = str(err)
    results["errors"] = errors

    if rank == 0:
        (out / "results.json").write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="directory for results.json, full.pt and ckpt/")
    parser.add_argument("--ep", default="1,2", help="EP degrees to run, comma-separated; the last saves")
    parser.add_argument(
        "--extras", action="store_true", help="also tied embeddings, skewed routing, bf16 (last ep)"
    )
    args = parser.parse_args()
    main(args.out, [int(e) for e in args.ep.split(",")], args.extras)
