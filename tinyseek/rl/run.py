"""`run_grpo(GRPORunConfig(...)) -> GRPOResult`: a whole GRPO run, the API the CLI and the R1 pipeline call.

A run directory holds `metrics.jsonl` (+ `tensorboard/`), `grpo_config.json`, `samples/eval-step-N.jsonl`
(every evaluation's completions), `checkpoints/step-N/` (resumable) and `final/` (the trained policy,
an HF model directory that `tinyseek.LLM` and `tinyseek serve` load).

Design choices:
- The run stops at `max_steps` or when `max_minutes` have passed (checked between steps), whichever
  comes first, or at SIGINT/SIGTERM (tinyseek.checkpoint.stop): the current step finishes and a
  checkpoint is written; a second signal stops at once.
- Checkpoints (tinyseek.checkpoint.run): `checkpoints/step-N/` is the policy as an HF model directory
  (so it loads with `tinyseek.LLM` and `tinyseek serve` as is), `trainer_state.pt` (step, prompts
  drawn, optimizer, RNG, config) and, when β > 0, `reference/` (the frozen reference policy, which
  must stay the initial one across resumes).
- `resume=True` continues from the newest complete checkpoint of `run_dir` (weights, optimizer, RNG,
  the prompt stream's position, the reference policy) and trims metrics.jsonl to the steps before it,
  so a resumed run logs the same next step as an uninterrupted one would.
- The model directory must carry its tokenizer (tokenizer.json), as `tinyseek.LLM` loads it.
- Under torchrun (`torchrun --nproc-per-node N -m tinyseek grpo ...`, same flags) every rank runs
  this function: the policy (and reference) are sharded with FSDP2 (+ `ep` expert parallelism),
  rollouts and evaluation problems are split over the ranks (tinyseek.rl.rollout, tinyseek.eval.sharded),
  checkpoints are sharded DCP directories (`save_sharded`, optimizer inside), and rank 0 alone writes
  metrics, samples and `final/` (from its engine's full copy of the policy). A signal or the time
  budget on any rank stops every rank after the same step (`ParallelRun.agreed_stop`).
- Resuming: any checkpoint resumes on any number of ranks. A sharded one is resharded on load (one
  process included, which then keeps writing sharded checkpoints); a one-process one gives every rank
  its full weights before sharding and its optimizer state is sharded by parameter name. The
  reference (β > 0) is the initial policy: `reference/` of a one-process checkpoint, else `--model`.
- Built-in rewards by name and weight (`reward_weights`) score with the task's own verifier; any extra
  `RewardFunction` can be added. Overlong shaping (`overlong_cache > 0`) adds the `overlong` reward.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinyseek.checkpoint.run import (
    CHECKPOINTS,
    REFERENCE_DIR,
    is_sharded,
    latest_checkpoint,
    load_sharded,
    load_state,
    save_checkpoint,
    save_model_dir,
    save_sharded,
    write_text_atomically,
)
from tinyseek.checkpoint.stop import StopSignal
from tinyseek.eval.sharded import evaluate_prompts_sharded
from tinyseek.rl.config import GRPOConfig
from tinyseek.rl.grpo_trainer import GRPOTrainer
from tinyseek.rl.policy import build_models, load_full_optimizer_state
from tinyseek.rl.prompts import PromptSource, parse_tasks
from tinyseek.rl.rewards import RewardFunction, RewardOptions, RewardSet
from tinyseek.rl.rollout import RolloutGroup, request_seed, task_score
from tinyseek.tasks import Split
from tinyseek.tasks.completion import Template, check_template
from tinyseek.train.metrics import MetricsLogger
from tinyseek.train.parallel_run import ParallelRun

log = logging.getLogger(__name__)

DEFAULT_REWARDS = {"accuracy": 1.0, "format": 0.5}
_SHOWN = ("reward/total/mean", "accuracy", "completion_length/mean", "kl", "step_seconds")


@dataclass
class GRPORunConfig:
    model: str | Path
    run_dir: str | Path
    task: str = "addition"
    eval_task: str | None = None
    template: Template = "r1zero"
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REWARDS))
    extra_rewards: list[RewardFunction] = field(default_factory=list)
    max_steps: int = 100
    max_minutes: float | None = None
    seed: int = 0
    difficulty: int = 1
    lang: str = "en"
    bf16: bool = False
    device: str = "cpu"
    micro_batch_tokens: int = 16384
    warmup_steps: int = 0
    eval_every: int = 25
    eval_problems: int = 64
    eval_split: Split = "test"  # "validation" for curves that tune a recipe without touching the test set
    eval_seed: int | None = None  # seed of the periodic eval's problems and samples (default: seed)
    save_every: int = 50
    keep_checkpoints: int = 2
    resume: bool = False
    ep: int = 1  # expert-parallel degree under torchrun (a divisor of the world size)
    log_rollouts: bool = False  # samples/rollouts-step-N.jsonl: every completion of every step
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_template(self.template)
        for name in ("max_steps", "micro_batch_tokens", "ep"):
            if getattr(self, name) < 1:
                raise ValueError(f"GRPORunConfig.{name} = {getattr(self, name)!r}; expected an integer >= 1")
        for name in ("eval_every", "eval_problems", "save_every", "keep_checkpoints", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"GRPORunConfig.{name} = {getattr(self, name)!r}; expected an integer >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"GRPORunConfig.max_minutes = {self.max_minutes!r}; expected None or > 0")

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("grpo", "extra_rewards")}
        out["model"], out["run_dir"] = str(self.model), str(self.run_dir)
        out["grpo"] = self.grpo.to_dict()
        out["extra_rewards"] = [{"name": r.name, "weight": r.weight} for r in self.extra_rewards]
        return out


@dataclass
class GRPOResult:
    run_dir: Path
    final_model: Path
    steps: int  # completed GRPO steps, counting those of resumed-from runs
    stopped: str  # "max_steps", "time" or "signal"
    metrics: dict[str, float]  # the last step's
    eval_metrics: dict[str, float]  # the last evaluation's (empty when evaluation is off)
    checkpoint: Path | None


def build_rewards(config: GRPORunConfig, style: Any) -> RewardSet:
    grpo = config.grpo
    options = RewardOptions(
        score=task_score,
        score_column="task_problem",
        style=style,
        max_len=grpo.overlong_limit,
        overlong_cache=grpo.overlong_cache,
    )
    weights = dict(config.reward_weights)
    if grpo.overlong_cache > 0:
        weights.setdefault("overlong", 1.0)
    rewards = RewardSet.from_weights(weights, options) if weights else RewardSet()
    for extra in config.extra_rewards:
        rewards.add(extra.name, extra.fn, extra.weight)
    if not len(rewards):
        raise ValueError("no rewards: give reward_weights or extra_rewards")
    return rewards


def run_grpo(config: GRPORunConfig) -> GRPOResult:
    """Train a policy with GRPO (see the module docstring for the run directory and stopping rules).

    Under torchrun every rank calls this; it joins the process group (unless the caller already did)
    and leaves it at the end if it joined it."""
    run = ParallelRun.start(torch.device(config.device), config.ep)
    try:
        return _run_grpo(config, run)
    finally:
        run.close()


def _resume_point(config: GRPORunConfig) -> Path | None:
    """The checkpoint to continue from (None: start from the model)."""
    if not config.resume:
        return None
    found = latest_checkpoint(Path(config.run_dir) / CHECKPOINTS)
    if found is None:
        log.warning("resume: no checkpoint under %s; starting from %s", config.run_dir, config.model)
    return found


def _run_grpo(config: GRPORunConfig, run: ParallelRun) -> GRPOResult:
    from tqdm.auto import tqdm

    from tinyseek.tokenizer import Tokenizer

    start = time.monotonic()
    model_dir, run_dir = Path(config.model), Path(config.run_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"model {str(model_dir)!r}: expected an HF model directory with config.json")
    file_split: Split | None = "train" if config.eval_task else None
    tasks = parse_tasks(config.task, file_split)  # bad task names fail before any model is loaded
    tokenizer = Tokenizer.from_pretrained(model_dir)
    grpo = config.grpo
    resume_from = _resume_point(config)
    from_shards = resume_from is not None and is_sharded(resume_from)
    sharded = run.distributed or from_shards  # the kind of checkpoint this run writes
    reference_dir = None
    if grpo.beta > 0:
        kept = resume_from / REFERENCE_DIR if resume_from is not None else None
        reference_dir = kept if kept is not None and kept.is_dir() else model_dir
    weights = resume_from if resume_from is not None and not from_shards else model_dir
    models = build_models(weights, run, reference_weights=reference_dir, bf16=config.bf16)

    context = models.rollout.config.max_position_embeddings
    if grpo.max_new_tokens >= context:
        raise ValueError(f"max_new_tokens = {grpo.max_new_tokens}; expected fewer than the context {context}")
    prompts = PromptSource(
        tasks,
        tokenizer,
        config.template,
        "train",
        config.seed,
        config.difficulty,
        config.lang,
        max_prompt_tokens=context - grpo.max_new_tokens,
    )
    rewards = build_rewards(config, prompts.style)
    trainer = GRPOTrainer(
        models.policy,
        tokenizer,
        grpo,
        rewards,
        prompts,
        seed=config.seed,
        amp_dtype=torch.bfloat16 if config.bf16 else None,
        micro_batch_tokens=config.micro_batch_tokens,
        warmup_steps=config.warmup_steps,
        reference=models.reference,
        run=run,
        rollout_model=models.rollout,
    )
    if resume_from is not None:
        if from_shards:
            load_sharded(resume_from, models.policy, trainer.optimizer)
        state = load_state(resume_from, sharded=from_shards)
        if run.distributed and not from_shards:  # a one-process checkpoint on several ranks
            load_full_optimizer_state(models, trainer.optimizer, state.pop("optimizer"))
        changed = sorted(k for k, v in state["config"].items() if grpo.to_dict().get(k) != v)
        if changed:
            log.warning("resume: GRPOConfig differs from the checkpoint's in %s", ", ".join(changed))
        trainer.load_state_dict(state)
        log.info("resumed from %s at step %d", resume_from, trainer.step)

    eval_items = []
    eval_seed = config.seed if config.eval_seed is None else config.eval_seed
    if config.eval_every > 0 and config.eval_problems > 0:
        eval_tasks = parse_tasks(config.eval_task, config.eval_split) if config.eval_task else prompts.tasks
        eval_source = PromptSource(
            eval_tasks, tokenizer, config.template, config.eval_split, eval_seed, config.difficulty, config.lang,
            max_prompt_tokens=context - grpo.max_new_tokens,
        )  # fmt: skip
        eval_items = eval_source.take(config.eval_problems)

    main = run.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "grpo_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str) + "\n")
    logger = (
        MetricsLogger(run_dir, config.tensorboard, resume_step=trainer.step + 1 if resume_from is not None else None)
        if main
        else None
    )  # fmt: skip
    metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    checkpoint: Path | None = resume_from
    stopped = "max_steps"

    def run_eval() -> None:
        nonlocal eval_metrics
        seeds = [request_seed(eval_seed, -1 - i) for i in range(len(eval_items))]
        eval_metrics, rows = evaluate_prompts_sharded(
            trainer.llm, eval_items, prompts.style, grpo.max_new_tokens, seeds
        )
        if logger is None:
            return
        lines = (json.dumps({"step": trainer.step, **row}, ensure_ascii=False) + "\n" for row in rows)
        write_text_atomically(run_dir / "samples" / f"eval-step-{trainer.step:06d}.jsonl", "".join(lines))
        logger.log(trainer.step, eval_metrics)
        log.info(
            "eval at step %d: greedy %.3f, sampled %.3f on %d problems",
            trainer.step,
            eval_metrics["eval/greedy_accuracy"],
            eval_metrics["eval/sampled_accuracy"],
            len(eval_items),
        )

    def save() -> None:
        nonlocal checkpoint
        root, keep = run_dir / CHECKPOINTS, config.keep_checkpoints or 1
        if sharded:
            checkpoint = save_sharded(
                root, trainer.step, models.policy, trainer.optimizer, tokenizer=tokenizer,
                state=trainer.state_dict(optimizer=False), keep=keep,
            )  # fmt: skip
        else:
            checkpoint = save_checkpoint(
                root, trainer.step, models.policy, tokenizer, trainer.state_dict(), keep, model_dir="",
                reference=trainer.reference,
            )  # fmt: skip

    bar = tqdm(
        total=config.max_steps, initial=trainer.step, desc="grpo", unit="step",
        disable=not (config.progress and main),
    )  # fmt: skip
    try:
        with StopSignal() as stop:
            if eval_items and trainer.step == 0:
                run_eval()
            while trainer.step < config.max_steps:
                out_of_time = (
                    config.max_minutes is not None and time.monotonic() - start >= 60 * config.max_minutes
                )
                signal_name, out_of_time = run.agreed_stop(stop.received, out_of_time)
                if signal_name is not None:
                    stopped = "signal"
                    break
                if out_of_time:
                    stopped = "time"
                    break
                result = trainer.train_step()
                metrics = result.metrics
                if logger is not None:
                    logger.log(result.step, metrics)
                    if config.log_rollouts:
                        write_rollouts(run_dir, result.step, result.groups)
                bar.update(1)
                bar.set_postfix({k.split("/")[-2] if "/" in k else k: f"{metrics[k]:.3g}"
                                 for k in _SHOWN if k in metrics})  # fmt: skip
                if eval_items and result.step % config.eval_every == 0:
                    run_eval()
                if config.save_every and result.step % config.save_every == 0:
                    save()
            if checkpoint is None or not checkpoint.name.endswith(f"{trainer.step:06d}"):
                save()
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    final = run_dir / "final"
    if main:  # the engine's copy holds the full weights on every rank
        save_model_dir(final, models.rollout, tokenizer)
    run.barrier()  # no rank returns before final/ is in place
    log.info("GRPO %s after %d steps; policy saved to %s", stopped, trainer.step, final)
    return GRPOResult(run_dir, final, trainer.step, stopped, metrics, eval_metrics, checkpoint)


def write_rollouts(run_dir: Path, step: int, groups: list[RolloutGroup]) -> None:
    """samples/rollouts-step-N.jsonl: one row per completion (group, prompt, ids, text, rewards)."""
    rows = (
        json.dumps(
            {"step": step, "group": index, "question": g.item.question, "completion_ids": ids, "completion": text,
             "finish_reason": finish, "reward": reward,
             "rewards": {name: values[i] for name, values in g.reward_values.items()}},
            ensure_ascii=False,
        ) + "\n"
        for index, g in enumerate(groups)
        for i, (ids, text, finish, reward) in enumerate(zip(g.completion_ids, g.texts, g.finish_reasons, g.rewards, strict=True))
    )  # fmt: skip
    write_text_atomically(run_dir / "samples" / f"rollouts-step-{step:06d}.jsonl", "".join(rows))
