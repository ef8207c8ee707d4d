"""The stages `tinyseek r1zero` runs and `tinyseek r1` reuses: pretraining a base from scratch, a GRPO
run from a model, and R1's evaluation as a recipe sets it. Each takes the run's `StageRunner` (for
resume, rank and barriers) and a small target saying what to train where, so both pipelines call
the same code with their own directories, languages and rewards.

- Pretraining runs a token budget (`PretrainRecipe.tokens`: the lr schedule completes on any
  machine) under a wall-clock cap; GRPO runs `max_steps` under its own cap. Both caps are checked
  between steps; a resumed stage gets its cap afresh.
- SIGINT/SIGTERM: pretraining and GRPO finish their step and checkpoint, then `StageInterrupted`
  stops the pipeline instead of going on to the next stage; `resume=True` continues from there.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.checkpoint.run import CHECKPOINTS, write_text_atomically
from tinyseek.eval.problems import ProblemSet
from tinyseek.eval.runner import EvalReport
from tinyseek.eval.sharded import evaluate_sharded
from tinyseek.r1zero.recipe import CorpusRecipe, EvalRecipe, GRPORecipe, PretrainRecipe
from tinyseek.rl.rewards import RewardFunction
from tinyseek.stages import StageInterrupted, StageRunner, intra_op_threads

log = logging.getLogger(__name__)

# The GRPORecipe fields that are GRPOConfig settings of the same name.
GRPO_SETTINGS = (
    "group_size",
    "prompts_per_step",
    "temperature",
    "top_p",
    "max_new_tokens",
    "beta",
    "mu",
    "lr",
)

# Sequences one engine step decodes during evaluation: at this model size a step is per-op overhead,
# so a wider batch is nearly free (1,000 sequences: 17.2 s at 1,024 against 19.6 s at 256, one thread,
# shared machine).
EVAL_BATCH = 1024


@dataclass(frozen=True)
class BaseTarget:
    """What one pretraining stage trains: where, on which tasks and languages, and which model shape."""

    run_dir: Path  # the trainer's run directory; the model lands in run_dir/model
    config_file: Path  # the model config.json written from the recipe's preset and overrides
    tasks: Sequence[str]
    rates: tuple[int, float, float, float]  # same_rates() of the families
    seed: int
    langs: Sequence[str] = ("en",)
    lang_weights: Sequence[int] = ()  # documents per cycle of each language (empty: one each)
    code_switch_rate: float = 0.0  # share of non-English documents worked in English
    all_dense: bool = False  # every layer a dense MLP (a distillation student)
    tokenizer: Path | None = None  # reuse this model dir's tokenizer instead of training one


def pretrain_stage(
    runner: StageRunner,
    p: PretrainRecipe,
    corpus: CorpusRecipe,
    target: BaseTarget,
    progress: Any,
    threads: int | None,
) -> dict[str, Any]:
    """Pretrain a base model from scratch on the corpus (a token budget under a wall-clock cap), with
    `threads` intra-op threads for this stage only; resumes an interrupted run from its checkpoint."""
    with intra_op_threads(threads):
        return _pretrain(runner, p, corpus, target, progress)


def _pretrain(
    runner: StageRunner, p: PretrainRecipe, corpus: CorpusRecipe, target: BaseTarget, progress: Any
) -> dict[str, Any]:
    from tinyseek.config import ModelConfig
    from tinyseek.train import TrainConfig, train

    run_dir, config_file = target.run_dir, target.config_file
    resume = runner.resume and any((run_dir / CHECKPOINTS).glob("*"))
    if runner.main:
        scratch = config_file.parent / f".{config_file.stem}"
        ModelConfig.preset(p.preset, **p.model_overrides).save_pretrained(scratch)
        shutil.move(scratch / "config.json", config_file)
        shutil.rmtree(scratch)
        if run_dir.exists() and not resume:  # stopped before its first checkpoint: start it afresh
            shutil.rmtree(run_dir)
    runner.barrier()
    if p.batch_size % runner.world:
        raise ValueError(
            f"pretraining batch {p.batch_size} does not split over {runner.world} ranks; "
            "launch a number of ranks that divides it"
        )
    difficulty, error_rate, self_check_rate, direct_rate = target.rates
    steps = max(p.warmup_steps + 1, round(p.tokens / (p.batch_size * p.seq_len)))
    result = train(
        TrainConfig(
            out=str(run_dir),
            preset=None,
            model_config=str(config_file),
            all_dense=target.all_dense,
            tokenizer=None if target.tokenizer is None else str(target.tokenizer),
            vocab_size=corpus.vocab_size,
            tasks=list(target.tasks),
            doc_format="r1zero",
            langs=list(target.langs),
            lang_weights=list(target.lang_weights),
            code_switch_rate=target.code_switch_rate,
            difficulty=difficulty,
            error_rate=error_rate,
            self_check_rate=self_check_rate,
            direct_rate=direct_rate,
            direct_from=corpus.direct_from,
            r1zero_preamble_share=corpus.template_share,
            seed=corpus.seed + target.seed,
            seq_len=p.seq_len,
            batch_size=p.batch_size // runner.world,  # rows per rank: the recipe's global batch
            max_steps=steps,
            max_minutes=p.seconds / 60,
            lr=p.lr,
            min_lr_ratio=p.min_lr_ratio,
            warmup_steps=p.warmup_steps,
            weight_decay=p.weight_decay,
            mtp_weight=0.0,
            precision="bf16" if p.autocast_bf16 else "fp32",
            eval_every=max(1, steps // 10),
            checkpoint_every=max(1, steps // p.checkpoints),
            keep_checkpoints=p.checkpoints,
            resume=resume,
        ),
        progress=progress,
    )
    if result.stop_reason in ("SIGINT", "SIGTERM"):
        raise StageInterrupted(f"pretraining stopped by {result.stop_reason} at step {result.steps}")
    if result.stop_reason == "max_minutes":
        log.warning(
            "pretraining hit its %.0f s cap after %d tokens (asked for %d)",
            p.seconds,
            result.tokens,
            p.tokens,
        )
    return {
        k: v for k, v in result.as_dict().items() if k in ("steps", "tokens", "tokens_per_s", "final_loss")
    }


@dataclass(frozen=True)
class GRPOTarget:
    """What one GRPO stage trains: the start model, the run directory and the prompts."""

    model: Path
    run_dir: Path
    tasks: Sequence[str]
    difficulty: int
    lang: str  # one prompt language, or several taking turns ("en,fr,zh")
    seed: int  # offsets the recipe's seed
    eval_seed: int  # the validation curves' problems and samples


def grpo_stage(
    runner: StageRunner,
    g: GRPORecipe,
    target: GRPOTarget,
    weights: dict[str, float],
    extra_rewards: Sequence[RewardFunction],
    show_progress: bool,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """GRPO from `target.model` with the recipe's settings and these rewards; `max_steps` overrides the
    recipe's (a compute-matched run grows it chunk by chunk, resuming)."""
    from tinyseek.rl import GRPOConfig, GRPORunConfig, run_grpo

    weights = dict(weights)
    if g.format_reward > 0:
        weights["format"] = g.format_reward
    steps = g.max_steps if max_steps is None else max_steps
    result = run_grpo(
        GRPORunConfig(
            model=target.model,
            run_dir=target.run_dir,
            task=",".join(target.tasks),
            template="r1zero",
            grpo=GRPOConfig.preset(g.loss_type, **{name: getattr(g, name) for name in GRPO_SETTINGS}),
            reward_weights=weights,
            extra_rewards=list(extra_rewards),
            max_steps=steps,
            max_minutes=g.seconds / 60,
            seed=g.seed + target.seed,
            difficulty=target.difficulty,
            lang=target.lang,
            # The curves: validation problems (never the test ones), drawn per seed like them.
            eval_every=g.eval_every,
            eval_problems=g.eval_problems,
            eval_split="validation",
            eval_seed=target.eval_seed,
            save_every=min(25, steps),
            resume=runner.resume or max_steps is not None,
            progress=show_progress,
        )
    )
    if result.stopped == "signal":
        raise StageInterrupted(f"GRPO stopped by a signal at step {result.steps}")
    info = {"steps": result.steps, "stopped": result.stopped}
    if runner.main:
        write_text_atomically(target.run_dir / "result.json", json.dumps(info) + "\n")
    return info


def evaluate_recipe(llm: Any, sets: Sequence[ProblemSet], e: EvalRecipe, seed: int) -> EvalReport:
    """R1's measurement of `llm` on `sets` as the recipe sets it (k samples at T, top-p, and greedy),
    split over the ranks under torchrun; `seed` offsets the recipe's sampling seed."""
    return evaluate_sharded(
        llm,
        sets,
        k=e.k,
        temperature=e.temperature,
        top_p=e.top_p,
        max_tokens=e.max_new_tokens,
        template="r1zero",
        seed=e.seed + seed,
        greedy=True,
    )
