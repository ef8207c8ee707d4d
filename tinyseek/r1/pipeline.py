"""`run_r1(recipe, out_dir) -> R1Result`: DeepSeek-R1's recipe and its distillation finding, in one run directory.

Stages (each one call into the library; the pretraining and GRPO stages are r1zero's own,
`tinyseek.r1zero.stages.pretrain_stage` / `grpo_stage`, over `tinyseek.stages.StageRunner`):

 1. pretrain           the teacher base (MLA + MoE) on the multilingual corpus (`MixRecipe`), with its tokenizer
 2. pretrain_student   the dense student's base, same corpus and tokenizer, fewer tokens
 3. r1zero_grpo        R1-Zero arm: pure GRPO from the base, prompts in every language, accuracy reward only
 4. cold_start_traces  the R1-Zero arm rejection-sampled (correct, well formed, language-consistent),
                       topped up with worked solutions, a summary line added (`tinyseek.r1.traces`)
 5. cold_start_sft     SFT of the base on them
 6. rl1                reasoning RL: accuracy + format + language consistency
 7. rejection          rl1 rejection-sampled on train problems: the second SFT's and distillation's data
 8. sft                SFT of the base on the kept traces
 9. rl2                second RL stage, same rewards: the R1 arm's final model
10. distill            the student SFT'd on the same traces
11. student_rl         the student by pure GRPO from its own base, in chunks, until its training FLOPs
                       reach the distillation's (`tinyseek.r1.measure`)
12. eval_<arm>         base, r1zero, r1, distilled, student_rl on the same test problems in every language
13. report             report.md, plots/rl_curves.png, summary.json (`tinyseek.r1.report`)

Layout of OUT: `recipe.json`, `stages.json`, `teacher_config.json` / `student_config.json`, one
directory per training stage (a trainer or GRPO run dir: models in `<stage>/model` or
`<stage>/final`), `cold_start/` and `rejection/` (`traces.jsonl`, `counts.json`), `eval/<arm>/<lang>.json`
(every completion) and `eval/<arm>.json` (the arm's figures), `report.md`, `plots/`, `summary.json`.
A stage's last file marks it done; `resume=True` skips done stages and continues an interrupted
pretraining or GRPO run from its checkpoint. Only `logging` and `on_stage` report progress.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.checkpoint.run import CHECKPOINTS, write_text_atomically
from tinyseek.r1.measure import arm_metrics, grpo_flops, load_scores, sft_flops
from tinyseek.r1.recipe import R1Recipe, SFTRecipe, TraceRecipe
from tinyseek.r1.traces import rejection_traces
from tinyseek.r1zero import stages as r1zero_stages
from tinyseek.r1zero.pipeline import same_rates
from tinyseek.r1zero.stages import BaseTarget, GRPOTarget, grpo_stage
from tinyseek.rl.rewards import RewardFunction, language_reward
from tinyseek.stages import RunHooks, StageHook, StageInterrupted, StageRunner, intra_op_threads
from tinyseek.tasks.completion import FormatStyle

log = logging.getLogger(__name__)

# arm -> the model it evaluates, relative to OUT
ARMS = {
    "base": "pretrain/model",
    "r1zero": "r1zero_grpo/final",
    "r1": "rl2/final",
    "distilled": "distill/model",
    "student_rl": "student_rl/final",
}
TRAINING_STAGES = (
    "pretrain",
    "pretrain_student",
    "r1zero_grpo",
    "cold_start_traces",
    "cold_start_sft",
    "rl1",
    "rejection",
    "sft",
    "rl2",
    "distill",
    "student_rl",
)
STAGES = (*TRAINING_STAGES, *(f"eval_{arm}" for arm in ARMS), "report")
STYLE: FormatStyle = "think_answer"  # the r1zero template's completions


@dataclass(frozen=True)
class R1Result:
    out_dir: Path
    report: Path
    summary: dict[str, Any]  # what summary.json holds


def logged_language() -> RewardFunction:
    """The language-consistency share as a weight-0 reward: logged per step, never optimised."""
    return RewardFunction("language", language_reward(STYLE), 0.0)


class _R1Run(StageRunner):
    """One r1 run over `out`: the stages that are not r1zero's (traces, SFT, compute-matched RL, eval)."""

    def __init__(self, recipe: R1Recipe, out: Path, seed: int, resume: bool, on_stage: StageHook | None):
        super().__init__(out, {"recipe": dataclasses.asdict(recipe), "seed": seed}, resume, on_stage)
        self.recipe, self.seed = recipe, seed
        self.rates = same_rates(recipe.families)
        self.tasks = [f.name for f in recipe.families]
        self.langs = list(recipe.mix.langs)

    def base_target(self, name: str, student: bool) -> BaseTarget:
        mix = self.recipe.mix
        return BaseTarget(
            self.out / name,
            self.out / f"{'student' if student else 'teacher'}_config.json",
            self.tasks,
            self.rates,
            self.seed,
            tuple(mix.langs),
            tuple(mix.weights),
            mix.code_switch_rate,
            all_dense=student,
            tokenizer=self.out / "pretrain" / "model" if student else None,
        )

    def grpo_target(self, model: str, run_dir: str) -> GRPOTarget:
        eval_seed = self.recipe.eval.seed + self.seed
        lang = ",".join(self.langs)
        return GRPOTarget(
            self.out / model, self.out / run_dir, self.tasks, self.rates[0], lang, self.seed, eval_seed
        )

    def traces(self, model: str, name: str, t: TraceRecipe, source: str) -> dict[str, Any]:
        from tinyseek.eval.rejection import write_traces
        from tinyseek.inference.llm import LLM

        seed = 1000 * (1 + list(STAGES).index(name)) + self.seed  # train problems of their own per stage
        rows, counts = rejection_traces(
            LLM(self.out / model, max_num_seqs=r1zero_stages.EVAL_BATCH),
            t,
            self.tasks,
            self.langs,
            self.rates[0],
            self.rates[2],
            seed,
            source,
        )
        if not rows:
            raise ValueError(
                f"{name}: no trace was kept from {self.out / model} ({counts}); expected at least one "
                "(enable fill_from_solutions or lower min_language)"
            )
        folder = self.out / ("cold_start" if name == "cold_start_traces" else name)
        if self.main:
            write_traces(folder / "traces.jsonl", rows)
            write_text_atomically(folder / "counts.json", json.dumps(counts, indent=2) + "\n")
        return {"traces": len(rows)}

    def sft(
        self, init: str, data: str, run_dir: str, s: SFTRecipe, student: bool, threads: int | None
    ) -> dict[str, Any]:
        """SFT of `init` on the traces in `data` for `s.epochs` passes (steps from the traces' tokens),
        with `threads` intra-op threads for this stage only (batched matmuls, as in pretraining)."""
        with intra_op_threads(threads):
            return self._sft(init, data, run_dir, s, student)

    def _sft(self, init: str, data: str, run_dir: str, s: SFTRecipe, student: bool) -> dict[str, Any]:
        from tinyseek.tokenizer import Tokenizer
        from tinyseek.train import TrainConfig, train

        model, out = self.out / init, self.out / run_dir
        tokenizer = Tokenizer.from_pretrained(model)
        rows = [json.loads(line) for line in (self.out / data).read_text(encoding="utf-8").splitlines()]
        tokens = sum(len(tokenizer.encode(r["prompt"] + r["completion"])) + 1 for r in rows)
        steps = max(2, math.ceil(s.epochs * tokens / (s.batch_size * s.seq_len)))
        result = train(
            TrainConfig(
                out=str(out),
                mode="sft",
                preset=None,
                init=str(model),
                all_dense=student,
                data=[str(self.out / data)],
                seed=self.seed,
                seq_len=s.seq_len,
                batch_size=s.batch_size,
                max_steps=steps,
                max_minutes=s.seconds / 60,
                lr=s.lr,
                warmup_steps=max(1, min(5, steps // 10)),
                mtp_weight=0.0,
                precision="fp32",
                eval_every=steps,
                checkpoint_every=steps,
                keep_checkpoints=1,
                resume=self.resume and any((out / CHECKPOINTS).glob("*")),
                tensorboard=False,
            )
        )
        if result.stop_reason in ("SIGINT", "SIGTERM"):
            raise StageInterrupted(f"{run_dir} stopped by {result.stop_reason} at step {result.steps}")
        config = model / "config.json"
        info = {
            "steps": result.steps,
            "tokens": result.tokens,
            "flops": sft_flops(config, result.tokens, s.seq_len),
        }
        if self.main:
            write_text_atomically(out / "result.json", json.dumps(info) + "\n")
        return info

    def prompt_tokens(self) -> int:
        """Tokens of a typical GRPO prompt (preamble and question), for the FLOPs count."""
        from tinyseek.chat_template import r1_zero_prompt
        from tinyseek.tasks import get_task
        from tinyseek.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(self.out / "pretrain" / "model")
        task = get_task(self.tasks[0])
        problem = next(task.sample(self.seed, self.rates[0], "validation"))
        return len(tokenizer.encode(r1_zero_prompt(task.prompt(problem, "en"))))

    def student_rl(self, show_progress: bool) -> dict[str, Any]:
        """GRPO from the student base in chunks until its FLOPs reach the distillation's."""
        from tinyseek.train.metrics import read_metrics

        r = self.recipe
        budget = float(json.loads((self.out / "distill" / "result.json").read_text())["flops"])
        target = self.grpo_target("pretrain_student/model", "student_rl")
        prompt_tokens = self.prompt_tokens()
        config = self.out / "pretrain_student" / "model" / "config.json"
        steps, flops = 0, 0.0
        while flops < budget and steps < r.student_rl_max_steps:
            steps = min(steps + r.student_rl_chunk, r.student_rl_max_steps)
            grpo_stage(
                self, r.student_rl, target, {"accuracy": 1.0}, [logged_language()], show_progress, steps
            )
            flops = grpo_flops(config, read_metrics(target.run_dir), prompt_tokens)
        info = {"steps": steps, "flops": flops, "distill_flops": budget, "prompt_tokens": prompt_tokens}
        if flops < budget:
            log.warning(
                "student_rl stopped at %d steps with %.3g FLOPs, under the distillation's %.3g",
                steps,
                flops,
                budget,
            )
        if self.main:
            write_text_atomically(self.out / "student_rl" / "compute.json", json.dumps(info) + "\n")
        return info

    def evaluate(self, arm: str) -> dict[str, Any]:
        """The arm's model on the same test problems in every language; its figures to eval/<arm>.json."""
        from tinyseek.eval.problems import problem_sets
        from tinyseek.inference.llm import LLM

        e = self.recipe.eval
        llm = LLM(self.out / ARMS[arm], max_num_seqs=r1zero_stages.EVAL_BATCH)
        folder = self.out / "eval" / arm
        for lang in self.langs:
            sets = problem_sets(
                self.tasks, e.problems_per_family, e.seed + self.seed, self.rates[0], "test", lang
            )
            report = r1zero_stages.evaluate_recipe(llm, sets, e, self.seed)
            if self.main:
                data = json.dumps(report.to_json(include_records=True), ensure_ascii=False)
                write_text_atomically(folder / f"{lang}.json", data + "\n")
        self.barrier()
        metrics = arm_metrics(load_scores(folder, self.langs), self.langs, seed=self.seed)
        if self.main:
            write_text_atomically(self.out / "eval" / f"{arm}.json", json.dumps(metrics, indent=2) + "\n")
        return {k: metrics["all"][k] for k in ("pass@1", "language_consistency")}


def run_r1(
    recipe: R1Recipe, out: str | Path, seed: int = 0, *, resume: bool = False, hooks: RunHooks | None = None
) -> R1Result:
    """Run every stage (module docstring); `seed` offsets every seed of the recipe; `hooks` hear the
    stages (and set the threads of pretraining, SFT and distillation)."""
    from tinyseek.r1.report import write_report

    hooks = hooks or RunHooks()
    on_stage, pretrain_progress, show_progress = hooks.on_stage, hooks.pretrain_progress, hooks.show_progress
    pretrain_threads = hooks.pretrain_threads
    run = _R1Run(recipe, Path(out), seed, resume, on_stage)
    out, r = run.out, recipe
    run.start()
    rewards = r.rewards.weights()
    steps = {
        "pretrain": lambda: r1zero_stages.pretrain_stage(
            run, r.teacher, r.corpus, run.base_target("pretrain", False), pretrain_progress, pretrain_threads
        ),
        "pretrain_student": lambda: r1zero_stages.pretrain_stage(
            run, r.student, r.student_corpus, run.base_target("pretrain_student", True), pretrain_progress, pretrain_threads
        ),
        "r1zero_grpo": lambda: grpo_stage(
            run, r.r1zero_grpo, run.grpo_target("pretrain/model", "r1zero_grpo"), {"accuracy": 1.0},
            [logged_language()], show_progress,
        ),  # fmt: skip
        "cold_start_traces": lambda: run.traces("r1zero_grpo/final", "cold_start_traces", r.cold_start, "r1zero"),
        "cold_start_sft": lambda: run.sft("pretrain/model", "cold_start/traces.jsonl", "cold_start_sft", r.cold_start_sft, False, pretrain_threads),
        "rl1": lambda: grpo_stage(run, r.rl1, run.grpo_target("cold_start_sft/model", "rl1"), rewards, [], show_progress),
        "rejection": lambda: run.traces("rl1/final", "rejection", r.rejection, "rl1"),
        "sft": lambda: run.sft("pretrain/model", "rejection/traces.jsonl", "sft", r.sft, False, pretrain_threads),
        "rl2": lambda: grpo_stage(run, r.rl2, run.grpo_target("sft/model", "rl2"), rewards, [], show_progress),
        "distill": lambda: run.sft("pretrain_student/model", "rejection/traces.jsonl", "distill", r.distill, True, pretrain_threads),
        "student_rl": lambda: run.student_rl(show_progress),
    }  # fmt: skip
    markers = {
        "pretrain": "pretrain/summary.json",
        "pretrain_student": "pretrain_student/summary.json",
        "r1zero_grpo": "r1zero_grpo/result.json",
        "cold_start_traces": "cold_start/counts.json",
        "cold_start_sft": "cold_start_sft/result.json",
        "rl1": "rl1/result.json",
        "rejection": "rejection/counts.json",
        "sft": "sft/result.json",
        "rl2": "rl2/result.json",
        "distill": "distill/result.json",
        "student_rl": "student_rl/compute.json",
    }
    for name in TRAINING_STAGES:
        run.stage(name, out / markers[name], steps[name])
    for arm in ARMS:
        run.stage(f"eval_{arm}", out / "eval" / f"{arm}.json", lambda arm=arm: run.evaluate(arm))  # type: ignore[misc]
    summary: dict[str, Any] = {}

    def report() -> dict[str, Any]:
        summary.update(
            write_report(out, recipe, seed, run.langs, list(ARMS), run.seconds) if run.main else {}
        )
        return {"report": str(out / "report.md")}

    run.stage("report", out / "summary.json", report)
    if not summary and run.main:
        summary = json.loads((out / "summary.json").read_text())
    return R1Result(out, out / "report.md", summary)
