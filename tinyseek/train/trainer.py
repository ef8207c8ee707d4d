"""The trainer: pretraining, SFT and distillation share one loop; `train(TrainConfig) -> TrainResult`.

Design choices:
- Setup order is fixed: ranks (ParallelRun: one process, or torchrun's group and mesh), data and
  tokenizer, model (fresh, `init`, or the resume checkpoint), `prepare_model` (activation
  checkpointing, torch.compile, then `parallelize_model`: the ONE call site where FSDP2/expert
  parallelism is applied, after the model is built and before the optimizer exists), optimizer and
  schedule, then the resumed states.
- Under torchrun each rank trains on its dp_shard slice of every global batch (`--batch-size` rows
  per rank), checkpoints are DCP-sharded (tinyseek.checkpoint.run) and the final model is
  converted to the same HF directory a one-process run writes; only rank 0 logs metrics and progress.
- Weights stay fp32 (the master copy the optimizer updates); forward and backward run under bf16
  autocast. Losses are token sums divided by the whole step's trained-token count (all micro-batches,
  all ranks), so gradient accumulation and data parallelism give the gradient of one big batch.
- After each optimizer step the expert loads of the step (LoadCounter) drive V3's bias update and the
  logged max-violation; the sequence-wise balance loss joins the objective when α > 0.
- Stopping: `max_steps`, `max_minutes` (checked between steps) or SIGINT/SIGTERM (the shared
  tinyseek.checkpoint.stop flag, read after the current step); every stop writes a checkpoint and
  the final model directory.
- The library never prints: progress goes to a `progress(step, max_steps, record)` callback (the
  CLI's tqdm bar) and to `logging`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tinyseek.checkpoint.run import (
    CHECKPOINTS,
    MODEL_DIR,
    export_model_dir,
    is_sharded,
    latest_checkpoint,
    load_sharded,
    load_state,
    rng_state,
    save_checkpoint,
    save_model_dir,
    save_sharded,
    set_rng_state,
)
from tinyseek.checkpoint.stop import StopSignal
from tinyseek.config import ModelConfig, load_config
from tinyseek.model import cpu_attention
from tinyseek.model.transformer import Transformer
from tinyseek.tokenizer import Tokenizer
from tinyseek.train.balance import LoadCounter, sequence_balance_loss
from tinyseek.train.config import TrainConfig, TrainResult
from tinyseek.train.corpus import Corpus, build_corpus
from tinyseek.train.losses import ForwardLosses, forward_losses
from tinyseek.train.metrics import MetricsLogger
from tinyseek.train.packing import Packer
from tinyseek.train.parallel_run import ParallelRun
from tinyseek.train.peak import device_peak_flops, flops_per_token, use_bf16
from tinyseek.train.schedule import make_scheduler

log = logging.getLogger(__name__)
Progress = Callable[[int, int, dict[str, Any]], None]
TOKENIZER_SAMPLE_DOCS = 2000


def parallelize_model(model: Transformer, run: ParallelRun, bf16: bool) -> nn.Module:
    """Where data/expert parallelism is applied: identity on one process, FSDP2 (+ EP) under torchrun.

    The loss calls `model.hidden_states`, `model.mtp_hidden_states` and `model.lm_head`, not
    `forward`: tinyseek.parallel registers the first two as FSDP forward methods (so the root
    unshards for them) and makes the head its own FSDP unit."""
    return run.parallelize(model, bf16)


def prepare_model(
    model: Transformer, config: TrainConfig, run: ParallelRun | None = None, bf16: bool = False
) -> Transformer:
    """Activation checkpointing and compilation per block (and, compiled on a CPU, the C++ attention
    kernel), then parallelism: before the optimizer."""
    blocks = [*model.layers, *(m.block for m in model.mtp)]  # type: ignore[attr-defined]
    for block in blocks:
        if config.activation_checkpointing:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        if config.compile:
            block.compile()
    if config.compile and next(model.parameters()).is_cpu:
        cpu_attention.enable(model)  # fp32 attention forward and backward in C++ (~0.6 of SDPA's time)
    parallel = parallelize_model(model, run or ParallelRun(torch.device("cpu")), bf16)
    assert isinstance(parallel, Transformer)
    return parallel


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build_model(config: TrainConfig, corpus: Corpus, run: ParallelRun) -> tuple[Transformer, Tokenizer]:
    """A fresh or initialized model and its tokenizer (given, from `init`, or trained on the corpus)."""
    if config.init is not None:
        model = Transformer.from_pretrained(config.init)
        if config.all_dense and any(
            model.config.is_moe_layer(i) for i in range(model.config.num_hidden_layers)
        ):
            raise ValueError(
                f"--init {config.init} has MoE layers: a distillation student must be dense "
                "(start it fresh from --preset/--config, which distill makes all-dense)"
            )
        tokenizer = Tokenizer.from_pretrained(config.tokenizer or config.init)
        return model, tokenizer
    model_config: ModelConfig = load_config(config.model_config or config.preset or "tiny")
    if config.tokenizer is not None:
        tokenizer = Tokenizer.from_pretrained(config.tokenizer)
    else:
        vocab = config.vocab_size or model_config.vocab_size
        texts = (d.prompt + d.completion for d in corpus.sample(TOKENIZER_SAMPLE_DOCS))
        tokenizer = run.tokenizer_from_rank0(
            lambda: Tokenizer.train(texts, vocab_size=vocab, full_byte_alphabet=False)
        )
    changes: dict[str, Any] = dict(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if config.all_dense:
        changes["first_k_dense_replace"] = model_config.num_hidden_layers
    return Transformer(model_config.replace(**changes)), tokenizer


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (norm gains are not decayed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr or 0.0, betas=(config.beta1, config.beta2))


def _eval_metrics(model: Transformer, rows: tuple[torch.Tensor, torch.Tensor], config: TrainConfig,
                  run: ParallelRun, with_mtp: bool, bf16: bool) -> dict[str, float]:  # fmt: skip
    """Held-out loss and accuracy of the main head, and of each MTP depth (depth 1: token after next).

    Each data rank evaluates its own equal share of the rows (FSDP: every rank runs as many forwards)."""
    device = run.device
    share = rows[0].shape[0] // run.world
    mine = slice(run.rank * share, (run.rank + 1) * share)
    tokens, mask = rows[0][mine], rows[1][mine]
    totals = torch.zeros(3 + 3 * len(model.mtp), dtype=torch.float64)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, tokens.shape[0], config.batch_size or 1):
            chunk = slice(start, start + (config.batch_size or 1))
            out = forward_losses(model, tokens[chunk].to(device), mask[chunk].to(device), with_mtp)
            for i, sums in enumerate([out.main, *out.mtp]):
                totals[3 * i : 3 * i + 3] += torch.stack([sums.loss, sums.count, sums.correct]).double().cpu()
    model.train()
    totals = run.all_reduce(totals.to(device)).cpu()
    metrics = {}
    for i in range(1 + (len(model.mtp) if with_mtp else 0)):
        loss, count, correct = totals[3 * i : 3 * i + 3].tolist()
        name = "eval" if i == 0 else ("eval/mtp" if i == 1 else f"eval/mtp{i}")
        metrics[f"{name}/loss"] = loss / max(count, 1)
        metrics[f"{name}/accuracy"] = correct / max(count, 1)
    return metrics


class _Step:
    """One optimizer step over `grad_accum` micro-batches; returns the logged losses."""

    def __init__(self, model: Transformer, config: TrainConfig, run: ParallelRun, with_mtp: bool, bf16: bool):
        self.model, self.config, self.run, self.with_mtp, self.bf16 = model, config, run, with_mtp, bf16
        self.device = run.device
        self.rank, self.world = run.rank, run.world
        self.loads = LoadCounter(model)

    def micro_batches(self, packer: Packer) -> list[tuple[torch.Tensor, torch.Tensor]]:
        per_rank = self.config.batch_size or 1
        out = []
        for _ in range(self.config.grad_accum):
            tokens, mask = packer.next_rows(per_rank * self.world)
            mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
            out.append((tokens[mine].to(self.device), mask[mine].to(self.device)))
        return out

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        depths = len(self.model.mtp) if self.with_mtp else 0
        counts = torch.zeros(1 + depths, dtype=torch.float64, device=self.device)
        for _, mask in batches:
            counts += torch.stack([mask[:, k + 1 :].sum() for k in range(1 + depths)]).double()
        counts = self.run.all_reduce(counts).clamp(min=1)
        sums = torch.zeros(2 + depths, dtype=torch.float64, device=self.device)
        for i, (tokens, mask) in enumerate(batches):
            self.run.sync_gradients(self.model, i == len(batches) - 1)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                out: ForwardLosses = forward_losses(self.model, tokens, mask, self.with_mtp)
                self.loads.add()
                loss = out.main.loss * (self.world / counts[0])
                for k, mtp in enumerate(out.mtp, start=1):
                    loss = loss + mtp.loss * (self.config.mtp_weight * self.world / (depths * counts[k]))
                balance = (
                    sequence_balance_loss(self.model, self.config.balance_alpha)
                    if self.config.balance_alpha > 0
                    else None
                )
                if balance is not None:
                    loss = loss + balance / len(batches)
            loss.backward()
            parts = [out.main.loss, *(m.loss for m in out.mtp)]
            sums[: 1 + depths] += torch.stack([p.detach() for p in parts]).double()
            if balance is not None:
                sums[-1] += balance.detach().double() / len(batches)
        sums = self.run.all_reduce(sums)
        record = {"loss": float(sums[0] / counts[0])}
        if depths:
            record["loss/mtp"] = float((sums[1 : 1 + depths] / counts[1:]).mean())
        if self.config.balance_alpha > 0:
            record["loss/balance"] = float(sums[-1]) / self.world
        return record


def _resolve(config: TrainConfig) -> TrainConfig:
    if config.resume and (Path(config.out) / "train_config.json").is_file():
        config = dataclasses.replace(config.for_resume(), resume=True)
    return config.resolved()


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run (or resume) a training run; returns where its model is and what it reached.

    Under torchrun (WORLD_SIZE > 1) every rank calls this: it joins the process group (unless the
    caller already did), shards the model with FSDP2 (+ EP when `config.ep` > 1) and leaves the group
    again at the end if it joined it."""
    config = _resolve(config)
    run = ParallelRun.start(_device(config.device), config.ep)
    try:
        return _train(config, run, progress)
    finally:
        run.close()


def _load_model(config: TrainConfig, corpus: Corpus, run: ParallelRun, resume_from: Path | None
                ) -> tuple[Transformer, Tokenizer]:  # fmt: skip
    """The model and tokenizer to train: from the resume checkpoint, or built by `_build_model`."""
    if resume_from is None:
        return _build_model(config, corpus, run)
    if run.distributed:  # a DCP checkpoint: the shards are loaded into this model once parallelized
        return Transformer(ModelConfig.from_pretrained(resume_from)), Tokenizer.from_pretrained(resume_from)
    return Transformer.from_pretrained(resume_from / MODEL_DIR), Tokenizer.from_pretrained(
        resume_from / MODEL_DIR
    )


def _resume_point(root: Path, sharded: bool) -> Path:
    """The checkpoint a resumed run continues from; an error saying why when there is none of its kind."""
    found = latest_checkpoint(root)
    if found is not None and is_sharded(found) == sharded:
        return found
    if found is None:
        hint = ""
    elif sharded:
        hint = f"; {found} was written by a one-process run: resume it without torchrun"
    else:
        hint = ": its checkpoints are sharded (written under torchrun); resume it under torchrun"
    kind = "sharded " if sharded else ""
    raise FileNotFoundError(f"{root}: no complete {kind}checkpoint to resume from{hint}")


def _train(config: TrainConfig, run: ParallelRun, progress: Progress | None) -> TrainResult:
    run_dir = Path(config.out)
    checkpoints = run_dir / CHECKPOINTS
    device = run.device
    bf16 = use_bf16(config.precision, device)
    _seed_everything(config.seed)
    corpus = build_corpus(config, run.world)
    resume_from = _resume_point(checkpoints, run.distributed) if config.resume else None
    model, tokenizer = _load_model(config, corpus, run, resume_from)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}: expected a tokenizer that fits the embedding"
        )
    if (config.seq_len or 2) > model.config.max_position_embeddings:  # rope has no angle past it
        raise ValueError(
            f"TrainConfig.seq_len={config.seq_len}: expected at most the model's max_position_embeddings="
            f"{model.config.max_position_embeddings}"
        )
    model.to(device).train()
    model = prepare_model(model, config, run, bf16)
    with_mtp = config.mtp_weight > 0 and len(model.mtp) > 0
    optimizer = _optimizer(model, config)
    scheduler = make_scheduler(optimizer, config.schedule_steps or 1, config.warmup_steps or 0,
                               config.schedule, config.min_lr_ratio, config.decay_fraction)  # fmt: skip
    seq_len = config.seq_len or 2
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    packer = Packer(corpus.train_documents, tokenizer, seq_len, config.mode == "sft", int(pad_id or 0))
    step, tokens_seen = 0, 0
    if resume_from is not None:
        if run.distributed:
            load_sharded(resume_from, model, optimizer)
            state = load_state(resume_from, sharded=True)
        else:
            state = load_state(resume_from)
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        packer.load_state_dict(state["data"])
        step, tokens_seen = state["step"], state["tokens"]
        set_rng_state(state["rng"])
        log.info("resumed %s at step %d", run_dir, step)
    eval_rows = corpus.eval_rows(tokenizer, seq_len, config.mode == "sft", int(pad_id or 0))
    if run.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir)
    logger = (
        MetricsLogger(run_dir, config.tensorboard, resume_step=step + 1 if resume_from else None)
        if run.is_main
        else None
    )
    peak = device_peak_flops(device, bf16)
    token_flops = flops_per_token(model.config, seq_len, with_mtp)
    step_fn = _Step(model, config, run, with_mtp, bf16)
    tokens_per_step = (config.batch_size or 1) * seq_len * config.grad_accum * run.world
    max_steps = config.max_steps or 0
    saved: dict[int, Path] = {}  # the checkpoint written at a step, so the final save is not repeated
    final_loss, stop_reason = math.nan, "max_steps"
    timed_tokens, timed_seconds = 0, 0.0
    start = time.perf_counter()

    def save(at: int) -> Path:
        if at in saved:
            return saved[at]
        state = {"scheduler": scheduler.state_dict(), "data": packer.state_dict(), "step": at,
                 "tokens": tokens_seen, "rng": rng_state()}  # fmt: skip
        keep = config.keep_checkpoints
        if run.distributed:
            saved[at] = save_sharded(
                checkpoints, at, model, optimizer, tokenizer=tokenizer, state=state, keep=keep
            )
        else:
            state["optimizer"] = optimizer.state_dict()
            saved[at] = save_checkpoint(checkpoints, at, model, tokenizer, state, keep)
        return saved[at]

    with StopSignal() as stop:
        while step < max_steps:
            began = time.perf_counter()
            record = step_fn(step_fn.micro_batches(packer))
            grad_norm = (
                run.clip_grad_norm_(model.parameters(), config.grad_clip) if config.grad_clip > 0 else None
            )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_fn.loads.all_reduce(run.group)  # every rank applies the same bias update
            violations = step_fn.loads.max_violation()
            step_fn.loads.update_bias(config.balance_rate)
            step_fn.loads.reset()
            step += 1
            tokens_seen += tokens_per_step
            elapsed = time.perf_counter() - began
            if step > 1 or max_steps == 1:  # the first step pays for warm-up, not training
                timed_tokens, timed_seconds = timed_tokens + tokens_per_step, timed_seconds + elapsed
            tokens_per_s = timed_tokens / timed_seconds if timed_seconds else tokens_per_step / elapsed
            final_loss = record["loss"]
            record.update(lr=lr, tokens=tokens_seen, tokens_per_s=tokens_per_s, step_seconds=elapsed)
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            if peak:
                record["mfu"] = token_flops * tokens_per_s / run.world / peak
            if violations:
                record["moe/max_violation"] = sum(violations.values()) / len(violations)
                record.update({f"moe/{name}/max_violation": v for name, v in violations.items()})
            signal_name, minutes_up = run.agreed_stop(
                stop.received,
                config.max_minutes is not None and (time.perf_counter() - start) / 60 >= config.max_minutes,
            )
            last = step >= max_steps or minutes_up or signal_name is not None
            if eval_rows is not None and (step % (config.eval_every or 1) == 0 or last):
                record.update(_eval_metrics(model, eval_rows, config, run, with_mtp, bf16))
            if logger is not None and (step % config.log_every == 0 or last):
                logger.log(step, record)
            if progress is not None and run.is_main:
                progress(step, max_steps, record)
            if step % (config.checkpoint_every or max_steps) == 0:
                save(step)
            if signal_name is not None or minutes_up:
                stop_reason = signal_name or "max_minutes"
                break
    final_checkpoint = save(step)
    model_dir = run_dir / MODEL_DIR
    tokens_per_s = timed_tokens / timed_seconds if timed_seconds else 0.0
    result = TrainResult(run_dir, model_dir, step, tokens_seen, tokens_per_s, final_loss, stop_reason)
    if run.is_main:
        if run.distributed:
            export_model_dir(final_checkpoint, model_dir, tokenizer)
        else:
            save_model_dir(model_dir, model, tokenizer)
        (run_dir / "summary.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    run.barrier()  # no rank returns before the model directory is in place
    if logger is not None:
        logger.close()
    log.info("%s: %d steps, %d tokens, %.0f tokens/s, loss %.4f (%s)", run_dir, step, tokens_seen,
             tokens_per_s, final_loss, stop_reason)  # fmt: skip
    return result
