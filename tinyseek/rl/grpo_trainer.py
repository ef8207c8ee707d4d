"""GRPOTrainer: one GRPO step = sample groups, score, group-relative advantages, μ clipped-surrogate updates.

Design choices:
- The policy is trained in fp32 master weights, with optional bf16 autocast for the forward/backward;
  the engine samples from the same in-memory Transformer (it notices the optimizer's in-place updates).
- `beta = 0` keeps no reference model at all; `beta > 0` keeps a frozen copy of the initial policy and
  computes its log-probs once per batch (no gradient), reused by every inner iteration.
- μ inner iterations need the old policy's log-probs, but the first iteration's forward IS the old
  policy (nothing has been applied yet), so its detached log-probs are stored and reused: μ = 1 costs
  no extra forward, μ > 1 costs none either, and the first iteration's ratio is exactly 1.
- Micro-batches pass the whole batch's sequence and token counts to `grpo_loss`, so their gradients add
  up to one big batch's. With β = 0, samples whose advantage is exactly 0 (every sample of a
  zero-variance group) are left out of the backward: they contribute nothing but compute (~4x less
  training compute, docs/architecture.md). Truncated samples are left out too when `mask_truncated`
  is on.
- Guards: an inner iteration whose loss, KL or gradient norm is not finite is skipped (gradients
  dropped, optimizer untouched) and logged; the step's remaining iterations are abandoned. A warning
  is logged when most groups have zero reward variance or most completions hit the length limit.
- Throughput metrics: `rollout_tokens_per_s` counts generated completion tokens; `train_tokens_per_s`
  counts the tokens the forward/backward computed (each group's prompt once, see `packing`), over all
  inner iterations.
- DAPO dynamic sampling (`dynamic_sampling`) draws more prompts until `prompts_per_step` informative
  groups are kept (`tinyseek.rl.dynamic_sampling.fill_batch`); reward metrics cover every drawn group.
- Under torchrun (a distributed `ParallelRun`, models from tinyseek.rl.policy) each rank samples its
  block of every round and then holds every group (RolloutSampler), so advantages, the kept groups,
  the batch's sequence and token counts and the rollout metrics are computed identically on every
  rank. The groups with trainable samples are then split into contiguous blocks, one per rank; each
  rank's loss carries the global denominators, times the world size because FSDP averages gradients,
  so the update is one process's on the whole batch. FSDP (and the EP all-to-all) need every rank in
  every forward, so ranks with fewer micro-batches run zero-weighted padding ones. Training metrics
  are gathered and merged as one process would sum them; the gradient norm is taken over all shards,
  so the skip decision is the same on every rank. After each optimizer step every rank's engine gets
  the new weights (`sync_rollout`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from tinyseek.inference.llm import LLM
from tinyseek.model.transformer import Transformer
from tinyseek.parallel.ranks import gather_objects, shard_range
from tinyseek.rl.config import GRPOConfig
from tinyseek.rl.dynamic_sampling import fill_batch, is_informative
from tinyseek.rl.objective import group_advantages, grpo_loss, token_entropy, token_logprobs
from tinyseek.rl.packing import MicroBatch, Sample, completion_logits, pack
from tinyseek.rl.policy import PolicyModels, sync_rollout
from tinyseek.rl.prompts import PromptSource
from tinyseek.rl.rewards import RewardScores, RewardSet
from tinyseek.rl.rollout import RolloutGroup, RolloutSampler
from tinyseek.train.parallel_run import ParallelRun

log = logging.getLogger(__name__)

WARN_SHARE = 0.5  # warn when more than this share of groups is flat or of completions is truncated
_SUMMED = ("loss", "tokens")  # micro-batch losses already carry the global denominators
_EXTREMES = {"ratio_min": min, "ratio_max": max}


@dataclass
class StepResult:
    """What one GRPO step did: its metrics, whether any update was skipped, and the groups trained on."""

    step: int
    metrics: dict[str, float]
    skipped: bool
    groups: list[RolloutGroup]


class GRPOTrainer:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Any,
        config: GRPOConfig,
        rewards: RewardSet,
        prompts: PromptSource,
        *,
        seed: int = 0,
        amp_dtype: torch.dtype | None = None,
        micro_batch_tokens: int = 16384,
        warmup_steps: int = 0,
        reference: Transformer | None = None,
        run: ParallelRun | None = None,
        rollout_model: Transformer | None = None,
    ) -> None:
        """`model` is trained; under torchrun it is already sharded (tinyseek.rl.policy), `run` is the
        distributed ParallelRun, `rollout_model` the rank's full copy for its engine and `reference`
        (β > 0) is required, sharded like the model."""
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.rewards = rewards
        self.prompts = prompts
        self.seed = seed
        self.amp_dtype = amp_dtype
        self.micro_batch_tokens = micro_batch_tokens
        self.warmup_steps = warmup_steps
        self.step = 0  # completed GRPO steps
        self.pad_id = getattr(tokenizer, "pad_token_id", None) or 0
        self.run = run if run is not None else ParallelRun(next(model.parameters()).device)
        self.reference: Transformer | None = None
        if config.beta > 0:
            if reference is None and self.run.distributed:
                raise ValueError("beta > 0 under torchrun: pass the reference, sharded like the model")
            self.reference = reference if reference is not None else copy.deepcopy(model)
            self.reference.eval().requires_grad_(False)
        self.models = PolicyModels(model, rollout_model or model, self.reference)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # foreach on DTensor shards: one DTensor dispatch per op for all parameters instead of one per
        # parameter (2.5x faster on the tiny preset's 2 gloo ranks, bitwise the same update); on plain
        # CPU tensors it gains nothing, so one process keeps torch's default.
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=config.lr,
            weight_decay=config.weight_decay,
            foreach=True if self.run.distributed else None,
        )
        batch = config.group_size * config.prompts_per_step
        self.llm = LLM(self.models.rollout, tokenizer, max_num_seqs=max(batch, 1))
        self.sampler = RolloutSampler(self.llm, rewards, config, seed, prompts.stop)

    # ---- learning rate --------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warmup over `warmup_steps` GRPO steps (1-based), then constant."""
        if self.warmup_steps == 0:
            return self.config.lr
        return self.config.lr * min(1.0, step / self.warmup_steps)

    # ---- rollouts -------------------------------------------------------------------------------
    def collect(self) -> tuple[list[RolloutGroup], dict[str, float]]:
        """Sample and score this step's groups (refilled by dynamic sampling when on) and their metrics."""
        drawn: list[RolloutGroup] = []
        seconds = 0.0
        tokens = 0

        def draw(n: int) -> list[RolloutGroup]:
            nonlocal seconds, tokens
            first = self.prompts.drawn
            result = self.sampler.sample(self.prompts.take(n), first, self.run.group)
            seconds += result.seconds
            tokens += result.completion_tokens
            drawn.extend(result.groups)
            return result.groups

        metrics: dict[str, float] = {}
        if self.config.dynamic_sampling:
            filled = fill_batch(draw, self.config.prompts_per_step, self.config.max_sampling_rounds)
            groups = filled.groups
            metrics["sampling/rounds"] = float(filled.rounds)
            metrics["sampling/groups_drawn"] = float(filled.drawn)
            metrics["sampling/groups_kept"] = float(len(groups))
        else:
            groups = draw(self.config.prompts_per_step)
        metrics.update(rollout_metrics(drawn, self.config.max_new_tokens))
        metrics["rollout_seconds"] = seconds
        metrics["rollout_tokens_per_s"] = tokens / seconds if seconds > 0 else 0.0
        if metrics["zero_variance_groups"] > WARN_SHARE:
            log.warning(
                "step %d: %.0f%% of groups have zero reward variance (no learning signal); "
                "the task may be too easy or too hard for the policy",
                self.step + 1,
                100 * metrics["zero_variance_groups"],
            )
        if metrics["completion_length/truncated"] > WARN_SHARE:
            log.warning(
                "step %d: %.0f%% of completions hit max_new_tokens = %d",
                self.step + 1,
                100 * metrics["completion_length/truncated"],
                self.config.max_new_tokens,
            )
        return groups, metrics

    # ---- the update -----------------------------------------------------------------------------
    def samples(self, groups: list[RolloutGroup]) -> tuple[list[Sample], int, int]:
        """This rank's trainable samples, and the whole batch's sequence and (unmasked) token counts."""
        if not groups:
            return [], 0, 0
        rewards = torch.tensor([r for g in groups for r in g.rewards], dtype=torch.float32)
        advantages = group_advantages(
            rewards, self.config.group_size, self.config.scale_rewards, self.config.advantage_eps
        ).tolist()
        everything = [
            Sample(index, g.item.token_ids, ids, 0.0, truncated)
            for index, g in enumerate(groups)
            for ids, truncated in zip(g.completion_ids, g.truncated, strict=True)
        ]
        for sample, advantage in zip(everything, advantages, strict=True):
            sample.advantage = advantage
        masked = self.config.mask_truncated
        tokens = sum(len(s.completion_ids) for s in everything if not (masked and s.truncated))
        kept = [
            s
            for s in everything
            if not (masked and s.truncated) and (self.config.beta > 0 or s.advantage != 0.0)
        ]
        if self.run.distributed:  # whole groups per rank, contiguous blocks of the trainable ones
            trainable = sorted({s.group for s in kept})
            mine = {trainable[i] for i in shard_range(len(trainable), self.run.rank, self.run.world)}
            kept = [s for s in kept if s.group in mine]
        return kept, len(everything), tokens

    def update(self, groups: list[RolloutGroup]) -> tuple[dict[str, float], bool]:
        """μ optimizer steps on `groups`; returns metrics and whether an iteration was skipped."""
        start = time.perf_counter()
        samples, num_sequences, num_tokens = self.samples(groups)
        real = pack(samples, self.micro_batch_tokens, self.pad_id) if samples else []
        trained, computed = self._summed([len(samples), sum(b.num_tokens for b in real)])
        metrics: dict[str, float] = {
            "lr": self.optimizer.param_groups[0]["lr"],
            "trained_sequences": trained,
            "batch_sequences": float(num_sequences),
        }
        if not trained:  # the same decision on every rank: the counts are summed over them
            log.info("step %d: no sample with a non-zero advantage; no update", self.step + 1)
            metrics["train_seconds"] = time.perf_counter() - start
            return metrics, False
        batches = real + self._padding(len(real))
        if self.reference is not None:
            self._reference_logprobs(batches)
        skipped = False
        trained_tokens = 0.0
        for iteration in range(self.config.mu):
            result = self._inner_iteration(batches, len(real), iteration, num_sequences, num_tokens)
            trained_tokens += computed
            prefix = f"inner/{iteration}/" if self.config.mu > 1 else ""
            for key, value in result.items():
                metrics[prefix + key] = value
                if iteration == 0 and prefix:
                    metrics[key] = value
            if result["skipped"]:
                skipped = True
                break
        seconds = time.perf_counter() - start
        metrics["train_seconds"] = seconds
        metrics["train_tokens_per_s"] = trained_tokens / seconds if seconds > 0 else 0.0
        metrics["skipped"] = float(skipped)
        return metrics, skipped

    def _summed(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (themselves in one process)."""
        if not self.run.distributed:
            return [float(v) for v in values]
        total = torch.tensor(values, dtype=torch.float64, device=self.run.device)
        return [float(v) for v in self.run.all_reduce(total).tolist()]

    def _padding(self, have: int) -> list[MicroBatch]:
        """Zero-weighted one-token micro-batches so this rank runs as many forwards as the busiest rank
        (FSDP's all-gathers and the EP all-to-all are collectives); none in one process."""
        if not self.run.distributed:
            return []
        most = torch.tensor([have], device=self.run.device)
        torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX, group=self.run.group)
        filler = Sample(0, [self.pad_id], [self.pad_id], 0.0, False)
        return [pack([filler], self.micro_batch_tokens, self.pad_id)[0] for _ in range(int(most) - have)]

    @torch.no_grad()
    def _reference_logprobs(self, batches: list[MicroBatch]) -> None:
        assert self.reference is not None
        for batch in batches:
            logits = completion_logits(self.reference, batch, self.amp_dtype)
            batch.ref_logprobs = token_logprobs(
                logits, batch.targets.to(logits.device), self.config.temperature
            )

    def _inner_iteration(
        self, batches: list[MicroBatch], real: int, iteration: int, num_sequences: int, num_tokens: int
    ) -> dict[str, float]:
        """One optimizer step over `batches`, of which the first `real` are this rank's samples and the
        rest padding (their loss is multiplied by 0)."""
        config = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # FSDP averages gradients over the ranks; the losses already divide by the whole batch's counts.
        scale = float(self.run.world) if self.run.distributed else 1.0
        totals: dict[str, float] = {}
        weights = 0.0
        for index, batch in enumerate(batches):
            self.run.sync_gradients(self.model, index == len(batches) - 1)
            logits = completion_logits(self.model, batch, self.amp_dtype)
            targets = batch.targets.to(logits.device)
            logprobs = token_logprobs(logits, targets, config.temperature)
            entropy = token_entropy(logits, config.temperature) if iteration == 0 else None
            out = grpo_loss(
                logprobs,
                batch.advantages.to(logits.device),
                batch.mask.to(logits.device),
                config,
                old_logprobs=batch.old_logprobs if iteration > 0 else None,
                ref_logprobs=batch.ref_logprobs,
                truncated=batch.truncated.to(logits.device),
                entropy=entropy,
                num_sequences=num_sequences,
                num_tokens=num_tokens,
            )
            if iteration == 0 and config.mu > 1:
                batch.old_logprobs = logprobs.detach()
            (out.loss * (scale if index < real else 0.0)).backward()
            if index >= real:
                continue
            weight = out.metrics["tokens"]
            weights += weight
            for key, value in out.metrics.items():
                if key in _SUMMED:
                    totals[key] = totals.get(key, 0.0) + value
                elif key in _EXTREMES:
                    totals[key] = _EXTREMES[key](totals.get(key, value), value)
                else:  # token-weighted mean over micro-batches
                    totals[key] = totals.get(key, 0.0) + value * weight
        totals, weights = merge_totals(gather_objects((totals, weights), self.run.group)
                                       if self.run.distributed else [(totals, weights)])  # fmt: skip
        result = {
            key: value if key in _SUMMED or key in _EXTREMES else value / max(weights, 1.0)
            for key, value in totals.items()
        }
        grad_norm = float(self.run.clip_grad_norm_(self.params, config.max_grad_norm))
        result["grad_norm"] = grad_norm
        checked = {"loss": result.get("loss", 0.0), "kl": result.get("kl", 0.0), "grad_norm": grad_norm}
        bad = {name: value for name, value in checked.items() if not math.isfinite(value)}
        result["skipped"] = float(bool(bad))
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            log.warning(
                "step %d, inner iteration %d: non-finite %s; update skipped, weights unchanged",
                self.step + 1,
                iteration,
                ", ".join(f"{name} = {value}" for name, value in bad.items()),
            )
        else:
            self.optimizer.step()
            sync_rollout(self.models)
        self.model.eval()
        return result

    # ---- one step -------------------------------------------------------------------------------
    def train_step(self) -> StepResult:
        """Sample, score and update once; `self.step` counts completed steps."""
        start = time.perf_counter()
        lr = self.lr_at(self.step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        groups, metrics = self.collect()
        update_metrics, skipped = self.update(groups)
        metrics.update(update_metrics)
        self.step += 1
        metrics["step_seconds"] = time.perf_counter() - start
        return StepResult(self.step, metrics, skipped, groups)

    # ---- resumable state ------------------------------------------------------------------------
    def state_dict(self, optimizer: bool = True) -> dict[str, Any]:
        """What a resumed run needs beside the weights; `optimizer=False` when a sharded (DCP)
        checkpoint holds the optimizer with the weights."""
        state = {
            "step": self.step,
            "prompts_drawn": self.prompts.drawn,
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_dict(),
            "seed": self.seed,
        }
        if optimizer:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.prompts.skip_to(int(state["prompts_drawn"]))
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        sync_rollout(self.models)  # weights loaded into the shards reach every rank's engine


def merge_totals(parts: list[tuple[dict[str, float], float]]) -> tuple[dict[str, float], float]:
    """Per-rank metric totals of one inner iteration combined as one process's loop would: sums add,
    extremes take the extreme, token-weighted sums add (their weights too)."""
    totals: dict[str, float] = {}
    for part, _ in parts:
        for key, value in part.items():
            if key in _EXTREMES:
                totals[key] = _EXTREMES[key](totals.get(key, value), value)
            else:
                totals[key] = totals.get(key, 0.0) + value
    return totals, sum(weight for _, weight in parts)


def rollout_metrics(groups: list[RolloutGroup], max_new_tokens: int) -> dict[str, float]:
    """Per-reward mean/std, accuracy, share of zero-variance groups and completion-length statistics."""
    if not groups:
        return {"zero_variance_groups": 0.0, "completion_length/truncated": 0.0}
    values: dict[str, list[float | None]] = {}
    for g in groups:
        for name, column in g.reward_values.items():
            values.setdefault(name, []).extend(column)
    scores = RewardScores(total=[r for g in groups for r in g.rewards], values=values)
    metrics = scores.metrics()
    if "accuracy" in values:
        metrics["accuracy"] = metrics["reward/accuracy/mean"]
    lengths = [len(ids) for g in groups for ids in g.completion_ids]
    truncated = [t for g in groups for t in g.truncated]
    metrics["zero_variance_groups"] = sum(not is_informative(g.rewards) for g in groups) / len(groups)
    metrics["completion_length/mean"] = sum(lengths) / len(lengths)
    metrics["completion_length/max"] = float(max(lengths))
    metrics["completion_length/truncated"] = sum(truncated) / len(truncated)
    metrics["completion_length/limit"] = float(max_new_tokens)
    return metrics
