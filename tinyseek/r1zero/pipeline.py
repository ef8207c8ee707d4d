"""`run_r1zero(recipe, out_dir) -> R1ZeroResult`: DeepSeek-R1-Zero in miniature, in one run directory.

Stages, each one call into the library (no training, RL or eval code of its own here):

1. pretrain   `tinyseek.train.train`: tokenizer trained on the corpus, then the base model on worked
              solutions with operand-dependent slips and a minority of self-checking traces.
2. reading    `tinyseek.r1zero.reading`: the share of operand digits the base copies right into its
              column lines (teacher-forced, validation problems): whether it learned to read at all.
3. eval_base  `tinyseek.eval.evaluate`: pass@1 over k samples (T 0.6, top-p 0.95) and greedy accuracy
              on held-out test-split problems of every family.
4. grpo       `tinyseek.rl.run_grpo`: pure GRPO from the base (no SFT), accuracy reward only.
5. eval_rl    the same evaluation, on the SAME problems with the same per-problem sampling seeds.
6. report     `tinyseek.r1zero.report`: report.md and PNG plots; the policy copied to OUT/model;
              summary.json with the figures.

Layout of OUT: `recipe.json`, `model_config.json`, `pretrain/` (trainer run dir; its model in
`pretrain/model`), `eval/base_reading.json`, `eval/{base,rl}.json` (the report's `EvalResult`) with `eval/{base,rl}_report.json`
(every completion, `EvalReport.to_json(include_records=True)`), `grpo/` (GRPO run dir: metrics.jsonl,
checkpoints, `final/`), `model/` (the trained policy, HF layout: `tinyseek.LLM`, `tinyseek serve`;
its chat template is the R1-Zero one, `chat_template.R1_ZERO_CHAT_TEMPLATE`, since the model never
saw R1's chat tokens),
`report.md` + PNGs, `stages.json` (seconds per finished stage) and `summary.json`.

Design choices:
- Resumable stage by stage (`tinyseek.stages.StageRunner`, shared with `tinyseek r1`): finished
  stages are skipped, an interrupted pretraining or GRPO run continues from its newest checkpoint,
  and a recipe that differs from the directory's is refused.
- Pretraining runs a token budget (`PretrainRecipe.tokens`: the lr schedule completes on any
  machine, and the base's skills depend on tokens, not seconds) under a wall-clock cap; GRPO runs
  `max_steps` under its own cap. Both caps are checked between steps, so a slow machine stops early
  instead of overrunning the job; a resumed stage gets its cap afresh.
- The trainer applies one error rate, self-check rate and difficulty to every task, and the GRPO loop
  one difficulty: a recipe whose families differ in them is rejected up front.
- The self-checking share during RL is a weight-0 reward (`metric_names.SELF_CHECK_REWARD`): the loop
  logs it per step beside the accuracy, and it never changes the reward being optimised.
- SIGINT/SIGTERM: pretraining and GRPO finish their step and checkpoint, then the pipeline raises
  `StageInterrupted` instead of going on to the next stage; `resume=True` continues from there.
- Only `logging` and the `on_stage` callback report progress; the CLI prints.
- Under torchrun (`torchrun --nproc-per-node N -m tinyseek r1zero ...`) the process group is joined
  once and every stage runs on every rank: pretraining with FSDP2 and the recipe's batch split over
  the ranks (the same global batch and token budget; the batch must divide), both evaluations split
  over the ranks by problem (`evaluate_sharded`: the same samples as one process), GRPO with
  per-rank rollouts and a sharded policy (`run_grpo`). Rank 0 alone writes the run-level files
  (recipe, stages, evaluations, report, model) and hears `on_stage`; barriers keep the others from
  reading them early.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist

from tinyseek.chat_template import R1_ZERO_CHAT_TEMPLATE
from tinyseek.checkpoint.run import atomic_directory, write_text_atomically
from tinyseek.eval.problems import ProblemSet, problem_sets
from tinyseek.eval.runner import EvalReport
from tinyseek.parallel.mesh import init_distributed
from tinyseek.r1zero.measurements import gain_intervals, problem_scores, validation_curves
from tinyseek.r1zero.metric_names import LENGTH, SELF_CHECK, SELF_CHECK_REWARD
from tinyseek.r1zero.reading import operand_reading
from tinyseek.r1zero.recipe import FamilyRecipe, Recipe
from tinyseek.r1zero.report import (
    Criterion,
    Curve,
    EvalResult,
    FamilyEval,
    Sample,
    acceptance,
    render_report,
)
from tinyseek.r1zero.self_check import is_self_checking
from tinyseek.r1zero.stages import (
    EVAL_BATCH,
    BaseTarget,
    GRPOTarget,
    evaluate_recipe,
    grpo_stage,
    pretrain_stage,
)
from tinyseek.rl.rewards import RewardFunction
from tinyseek.stages import StageHook, StageRunner
from tinyseek.train.parallel_run import launched_distributed

log = logging.getLogger(__name__)

STAGES = ("pretrain", "reading", "eval_base", "grpo", "eval_rl", "report")


@dataclass(frozen=True)
class R1ZeroResult:
    out_dir: Path
    model_dir: Path  # the trained policy, HF layout
    report: Path
    summary: dict[str, Any]  # what summary.json holds
    base: EvalResult
    rl: EvalResult


def same_rates(families: Sequence[FamilyRecipe]) -> tuple[int, float, float, float]:
    """(difficulty, error_rate, self_check_rate, direct_rate), shared by every family (module docstring)."""
    settings = {(f.difficulty, f.error_rate, f.self_check_rate, f.direct_rate) for f in families}
    if len(settings) != 1:
        raise ValueError(
            f"families {[f.name for f in families]} differ in difficulty / error_rate / "
            f"self_check_rate / direct_rate {sorted(settings)}: the trainer and the GRPO loop take one value for all tasks"
        )
    return settings.pop()


def self_check_reward(
    prompts: Sequence[str], completions: Sequence[str], **columns: Any
) -> list[float | None]:
    """1.0 for a completion that checks its own answer, else 0.0 (logged with weight 0)."""
    return [1.0 if is_self_checking(text) else 0.0 for text in completions]


def to_eval_result(report: EvalReport, sets: Sequence[ProblemSet], samples_per_family: int) -> EvalResult:
    """The report's view of an evaluation: per-family accuracies, self-check share and length over the
    k sampled completions, and the first sample of the first problems of each family."""
    families = {
        name: FamilyEval(
            pass_at_1=float(metrics["pass@1"]),
            greedy=float(metrics["greedy_accuracy"]),
            problems=int(metrics["problems"]),
        )
        for name, metrics in report.families.items()
    }
    sampled = [s for record in report.records for s in record.samples]
    checked = [s.correct for s in sampled if is_self_checking(s.text)]
    unchecked = [s.correct for s in sampled if not is_self_checking(s.text)]
    questions = {
        (problem_set.name, problem.canonical): problem_set.task.prompt(problem, problem_set.lang)
        for problem_set in sets
        for problem in problem_set.problems[:samples_per_family]
    }
    shown = [
        Sample(r.task, questions[(r.task, r.canonical)], r.samples[0].text, r.samples[0].correct)
        for r in report.records
        if (r.task, r.canonical) in questions
    ]
    settings = report.settings
    return EvalResult(
        families=families,
        k=int(settings["k"]),
        temperature=float(settings["temperature"]),
        top_p=float(settings["top_p"]),
        self_check_share=statistics.fmean(is_self_checking(s.text) for s in sampled),
        length_mean=statistics.fmean(s.completion_tokens for s in sampled),
        samples=shown,
        checked_right=statistics.fmean(checked) if checked else None,
        unchecked_right=statistics.fmean(unchecked) if unchecked else None,
    )


class _Run(StageRunner):
    """One pipeline run over `out`: the shared stage bookkeeping, and the stages."""

    def __init__(self, recipe: Recipe, out: Path, seed: int, resume: bool, on_stage: StageHook | None):
        super().__init__(out, {"recipe": recipe.to_dict(), "seed": seed}, resume, on_stage)
        self.recipe, self.seed = recipe, seed
        self.rates = same_rates(recipe.families)
        self.difficulty = self.rates[0]
        self.tasks = [f.name for f in recipe.families]

    # ---- stages ---------------------------------------------------------------------------------
    def problem_sets(self) -> list[ProblemSet]:
        e = self.recipe.eval
        return problem_sets(
            self.tasks,
            e.problems_per_family,
            e.seed + self.seed,
            self.difficulty,
            "test",
            self.recipe.corpus.language,
        )

    def reading(self) -> dict[str, Any]:
        """Rank 0 alone probes the base (a few seconds); the others read its file after the barrier."""
        if not self.main:
            return {}
        shares = operand_reading(self.out / "pretrain" / "model", self.tasks, self.seed, self.difficulty)
        write_text_atomically(self.out / "eval" / "base_reading.json", json.dumps(shares, indent=2) + "\n")
        return {"reads_operands": shares}

    def evaluate(self, model_dir: Path, name: str) -> dict[str, Any]:
        from tinyseek.inference.llm import LLM

        e = self.recipe.eval
        sets = self.problem_sets()
        report = evaluate_recipe(LLM(model_dir, max_num_seqs=EVAL_BATCH), sets, e, self.seed)
        result = to_eval_result(report, sets, e.samples_per_family)
        eval_dir = self.out / "eval"
        if not self.main:
            return {}
        write_text_atomically(
            eval_dir / f"{name}_report.json",
            json.dumps(report.to_json(include_records=True), ensure_ascii=False) + "\n",
        )
        write_text_atomically(eval_dir / f"{name}_report.md", report.markdown() + "\n")
        write_text_atomically(
            eval_dir / f"{name}.json", json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n"
        )
        return {
            "pass@1": result.mean("pass_at_1"),
            "greedy": result.mean("greedy"),
            "self_check_share": result.self_check_share,
            "length_mean": result.length_mean,
        }

    def grpo(self, show_progress: bool) -> dict[str, Any]:
        return grpo_stage(
            self,
            self.recipe.grpo,
            GRPOTarget(self.out / "pretrain" / "model", self.out / "grpo", self.tasks, self.difficulty,
                       self.recipe.corpus.language, self.seed, self.recipe.eval.seed + self.seed),
            {"accuracy": 1.0},
            [RewardFunction(SELF_CHECK_REWARD, self_check_reward, 0.0)],
            show_progress,
        )  # fmt: skip


def use_r1_zero_chat_template(model_dir: Path) -> None:
    """Make the model directory's chat template the R1-Zero one it was trained on, so `tinyseek chat`
    and `tinyseek serve` put a question in the format the model knows (it never saw R1's chat tokens)."""
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["chat_template"] = R1_ZERO_CHAT_TEMPLATE
    config_file.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _grpo_series(run_dir: Path) -> dict[str, list[float]]:
    from tinyseek.train.metrics import read_metrics

    series: dict[str, list[float]] = {}
    for record in read_metrics(run_dir):
        for key in (SELF_CHECK, LENGTH, "rollout_tokens_per_s", "step_seconds"):
            if isinstance(record.get(key), (int, float)):
                series.setdefault(key, []).append(float(record[key]))
    return series


def _criteria_rows(criteria: Sequence[Criterion]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "base": c.base,
            "rl": c.rl,
            "gain": c.gain,
            "required": c.required,
            "passed": c.passed,
        }
        for c in criteria
    ]


def _summary(
    run: _Run,
    base: EvalResult,
    rl: EvalResult,
    validation: Sequence[Curve],
    gain_ci: dict[str, dict[str, tuple[float, float]]],
) -> dict[str, Any]:
    out = run.out
    pretrain = json.loads((out / "pretrain" / "summary.json").read_text())
    grpo = json.loads((out / "grpo" / "result.json").read_text())
    series = _grpo_series(out / "grpo")
    criteria = acceptance(base, rl, validation, gain_ci)

    def ends(key: str) -> dict[str, float | None]:
        values = series.get(key, [])
        return {"first_step": values[0] if values else None, "last_step": values[-1] if values else None}

    rollout = series.get("rollout_tokens_per_s", [])
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "model": str(out / "model"),
        "seed": run.seed,
        "families": {
            name: {
                "problems": rl.families[name].problems,
                "base": {"pass@1": base.families[name].pass_at_1, "greedy": base.families[name].greedy},
                "rl": {"pass@1": rl.families[name].pass_at_1, "greedy": rl.families[name].greedy},
                "gain_ci95": {metric: list(ci) for metric, ci in gain_ci.get(name, {}).items()},
            }
            for name in base.families
        },
        "eval": {"k": rl.k, "temperature": rl.temperature, "top_p": rl.top_p, "split": "test"},
        "self_check_share": {
            "base": base.self_check_share,
            "rl": rl.self_check_share,
            "grpo": ends(SELF_CHECK),
        },
        "length_mean": {"base": base.length_mean, "rl": rl.length_mean, "grpo": ends(LENGTH)},
        "checked_right": {"base": base.checked_right, "rl": rl.checked_right},
        "unchecked_right": {"base": base.unchecked_right, "rl": rl.unchecked_right},
        "validation_curve": [dataclasses.asdict(point) for point in validation],
        "criteria": _criteria_rows(criteria),
        "criteria_met": all(c.passed for c in criteria),
        "seconds": {**run.seconds, "total": sum(run.seconds.values())},
        "pretrain": {
            k: pretrain[k] for k in ("steps", "tokens", "tokens_per_s", "final_loss", "stop_reason")
        },
        "grpo": grpo,
        # Read by `tinyseek cost --measured OUT` (tinyseek.cost.measured.THROUGHPUT_KEYS).
        "tokens_per_s": pretrain["tokens_per_s"],
    }
    if rollout:
        summary["rollout/tokens_per_s"] = statistics.fmean(rollout)
    return summary


def run_r1zero(
    recipe: Recipe,
    out_dir: str | Path,
    seed: int = 0,
    *,
    resume: bool = False,
    on_stage: StageHook | None = None,
    pretrain_progress: Any = None,
    show_progress: bool = False,
    pretrain_threads: int | None = None,
) -> R1ZeroResult:
    """Run every stage (see the module docstring); `seed` offsets every seed of the recipe.

    `on_stage(stage, event, info)` hears each stage start, finish (with its seconds and figures) or
    skip; `pretrain_progress` is the trainer's per-step callback; `show_progress` shows GRPO's bar.
    `pretrain_threads` sets torch's intra-op threads for pretraining only: its batched matmuls gain
    from a second core where decoding (eval, GRPO rollouts) is per-op overhead that extra threads
    slow down (measured on 2 cores: pretraining 7,100 vs 4,900 tokens/s with 2 threads vs 1 on a
    quiet machine; an eval 94 s vs 17 s with 2 vs 1 on a loaded one).
    """
    joined = launched_distributed() and not dist.is_initialized()
    if joined:  # every stage reuses this group (and leaves it alone)
        init_distributed("cpu")
    try:
        return _run_stages(recipe, Path(out_dir), seed, resume, on_stage, pretrain_progress, show_progress,
                           pretrain_threads)  # fmt: skip
    finally:
        if joined:
            dist.destroy_process_group()


def _run_stages(
    recipe: Recipe,
    out_dir: Path,
    seed: int,
    resume: bool,
    on_stage: StageHook | None,
    pretrain_progress: Any,
    show_progress: bool,
    pretrain_threads: int | None,
) -> R1ZeroResult:
    run = _Run(recipe, out_dir, seed, resume, on_stage)
    out = run.out
    run.start()
    run.stage(
        "pretrain",
        out / "pretrain" / "summary.json",
        lambda: pretrain_stage(
            run,
            recipe.pretrain,
            recipe.corpus,
            BaseTarget(
                out / "pretrain",
                out / "model_config.json",
                run.tasks,
                run.rates,
                seed,
                (recipe.corpus.language,),
            ),
            pretrain_progress,
            pretrain_threads,
        ),  # fmt: skip
    )
    run.stage("reading", out / "eval" / "base_reading.json", run.reading)
    reading = json.loads((out / "eval" / "base_reading.json").read_text())
    run.stage(
        "eval_base", out / "eval" / "base.json", lambda: run.evaluate(out / "pretrain" / "model", "base")
    )
    run.stage("grpo", out / "grpo" / "result.json", lambda: run.grpo(show_progress))
    run.stage("eval_rl", out / "eval" / "rl.json", lambda: run.evaluate(out / "grpo" / "final", "rl"))
    base, rl = EvalResult.load(out / "eval" / "base.json"), EvalResult.load(out / "eval" / "rl.json")

    def report() -> dict[str, Any]:
        if not run.main:
            return {}
        with atomic_directory(out / "model") as tmp:
            shutil.copytree(out / "grpo" / "final", tmp, dirs_exist_ok=True)
            use_r1_zero_chat_template(tmp)
        timings = {k: v for k, v in run.seconds.items() if k != "report"}
        path = render_report(
            out,
            out / "grpo",
            base,
            rl,
            timings,
            {"seed": seed, **recipe.to_dict()},
            validation,
            gain_ci,
            reading,
        )
        return {"report": str(path)}

    validation = validation_curves(out / "grpo")
    gain_ci = gain_intervals(
        problem_scores(out / "eval" / "base_report.json"),
        problem_scores(out / "eval" / "rl_report.json"),
        seed=seed,
    )
    run.stage("report", out / "summary.json", report)
    summary = _summary(run, base, rl, validation, gain_ci) | {"base_reading": reading}
    if run.main:
        write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    run.barrier()
    log.info(
        "r1zero: %s; report %s",
        "criteria met" if summary["criteria_met"] else "criteria NOT met",
        out / "report.md",
    )
    return R1ZeroResult(out, out / "model", out / "report.md", summary, base, rl)
