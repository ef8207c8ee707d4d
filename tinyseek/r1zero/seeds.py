"""`run_r1zero_seeds`: the r1zero pipeline once per seed, then one aggregate report with intervals.

A result where chance enters is a statistic: every seed reruns the WHOLE pipeline (tokenizer,
corpus stream, base model, evaluation problems, GRPO sampling), in `OUT/seed-N/` (a complete r1zero
run directory each, resumable on its own), and `OUT/report.md` + `OUT/summary.json` + `OUT/plots/`
aggregate them:
- every figure as the mean over seeds with a 95% t interval across seeds (`ci95` beside each mean);
- each family's gain also with a per-problem paired bootstrap pooled over the seeds
  (`bootstrap_ci95`), which reflects the finite test sets;
- the acceptance criteria checked for EACH seed (a floating-point difference between CPUs moves a
  trajectory as a seed does, so a recipe must hold for every seed, not only on average) and for the
  mean with the pooled bootstrap interval;
- the validation curves during GRPO, one line per seed.

`jobs` > 1 runs that many seeds at once, each in its own process with one intra-op thread: the tiny
model's ops are too small for a second thread to help one run (pretraining ≈7,000 tokens/s with 1 or
2 threads on a 2-core machine), so two runs side by side nearly double the throughput. The seeds'
results do not depend on it: each run is the same computation whichever process runs it.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tinyseek.checkpoint.run import write_text_atomically
from tinyseek.r1zero.intervals import bootstrap_gain, seed_interval
from tinyseek.r1zero.measurements import problem_scores, validation_curves
from tinyseek.r1zero.pipeline import R1ZeroResult, StageHook, run_r1zero
from tinyseek.r1zero.recipe import Recipe
from tinyseek.r1zero.report import VALIDATION_FILE, Curve, EvalResult, FamilyEval, acceptance, plot_validation

log = logging.getLogger(__name__)


def parse_seeds(text: str) -> list[int]:
    """`"0,1,2"` -> [0, 1, 2]; duplicates and non-integers are errors naming the value."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected comma-separated integers such as 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: expected at least one seed and no repeats")
    return seeds


def _mean_interval(values: Sequence[float]) -> dict[str, Any]:
    ci = seed_interval(values)
    return {"mean": statistics.fmean(values), "ci95": list(ci) if ci else None, "per_seed": list(values)}


def _mean_result(results: Sequence[EvalResult]) -> EvalResult:
    """The seeds' mean evaluation (per family and metric), for the criteria on the mean."""

    def mean(values: Sequence[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.fmean(known) if known else None

    first = results[0]
    return EvalResult(
        families={
            name: FamilyEval(
                pass_at_1=statistics.fmean(r.families[name].pass_at_1 for r in results),
                greedy=statistics.fmean(r.families[name].greedy for r in results),
                problems=sum(r.families[name].problems for r in results),
            )
            for name in first.families
        },
        k=first.k,
        temperature=first.temperature,
        top_p=first.top_p,
        self_check_share=statistics.fmean(r.self_check_share for r in results),
        length_mean=statistics.fmean(r.length_mean for r in results),
        checked_right=mean([r.checked_right for r in results]),
        unchecked_right=mean([r.unchecked_right for r in results]),
    )


def aggregate(out: Path, runs: dict[int, R1ZeroResult]) -> dict[str, Any]:
    """OUT/summary.json, OUT/report.md and OUT/plots/ from finished per-seed runs."""
    seeds = sorted(runs)
    scores = {
        seed: (
            problem_scores(runs[seed].out_dir / "eval" / "base_report.json"),
            problem_scores(runs[seed].out_dir / "eval" / "rl_report.json"),
        )
        for seed in seeds
    }
    families: dict[str, Any] = {}
    pooled: dict[str, dict[str, tuple[float, float]]] = {}
    for name in runs[seeds[0]].base.families:
        entry: dict[str, Any] = {"problems": [runs[s].rl.families[name].problems for s in seeds]}
        for side in ("base", "rl"):
            values = {
                "pass@1": [getattr(runs[s], side).families[name].pass_at_1 for s in seeds],
                "greedy": [getattr(runs[s], side).families[name].greedy for s in seeds],
            }
            entry[side] = {m: statistics.fmean(v) for m, v in values.items()}
            entry[side]["ci95"] = {m: _mean_interval(v)["ci95"] for m, v in values.items()}
        gains = {
            "pass@1": [
                runs[s].rl.families[name].pass_at_1 - runs[s].base.families[name].pass_at_1 for s in seeds
            ],
            "greedy": [runs[s].rl.families[name].greedy - runs[s].base.families[name].greedy for s in seeds],
        }
        pooled[name] = {
            m: bootstrap_gain([(scores[s][0][name][m], scores[s][1][name][m]) for s in seeds]) for m in gains
        }
        entry["gain"] = {m: statistics.fmean(v) for m, v in gains.items()}
        entry["gain"]["ci95"] = {m: _mean_interval(v)["ci95"] for m, v in gains.items()}
        entry["gain"]["bootstrap_ci95"] = {m: list(ci) for m, ci in pooled[name].items()}
        families[name] = entry

    def both(attr: str) -> dict[str, Any]:
        values = {side: [getattr(getattr(runs[s], side), attr) for s in seeds] for side in ("base", "rl")}
        known = {side: [v for v in vs if v is not None] for side, vs in values.items()}
        result: dict[str, Any] = {side: statistics.fmean(v) if v else None for side, v in known.items()}
        result["ci95"] = {side: _mean_interval(v)["ci95"] if v else None for side, v in known.items()}
        return result

    curves = {seed: validation_curves(runs[seed].out_dir / "grpo") for seed in seeds}
    mean_base = _mean_result([runs[s].base for s in seeds])
    mean_rl = _mean_result([runs[s].rl for s in seeds])
    criteria = [
        {"name": f"mean of {len(seeds)} seeds: {c.name}", "base": c.base, "rl": c.rl, "gain": c.gain,
         "required": c.required, "passed": c.passed}
        for c in acceptance(mean_base, mean_rl, gain_ci=pooled)
    ]  # fmt: skip
    for seed in seeds:
        failed = [c["name"] for c in runs[seed].summary["criteria"] if not c["passed"]]
        criteria.append(
            {"name": f"seed {seed}: every criterion", "required": "all met", "passed": not failed,
             "failed": failed}
        )  # fmt: skip
    summary: dict[str, Any] = {
        "seeds": seeds,
        "runs": {str(s): str(runs[s].out_dir) for s in seeds},
        "families": families,
        "self_check_share": both("self_check_share"),
        "length_mean": both("length_mean"),
        "checked_right": both("checked_right"),
        "unchecked_right": both("unchecked_right"),
        "validation_curve": {str(s): [vars(p) for p in curves[s]] for s in seeds},
        "per_seed": {str(s): _per_seed(runs[s]) for s in seeds},
        "criteria": criteria,
        "criteria_met": all(c["passed"] for c in criteria),
        "seconds": {
            "per_seed": {str(s): runs[s].summary["seconds"]["total"] for s in seeds},
            "total": sum(runs[s].summary["seconds"]["total"] for s in seeds),
        },
    }
    plot_validation({f"seed {s}": curves[s] for s in seeds if curves[s]}, out / VALIDATION_FILE)
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out / "report.md", render_aggregate(summary, curves))
    return summary


def _per_seed(run: R1ZeroResult) -> dict[str, Any]:
    s = run.summary
    keys = ("families", "self_check_share", "length_mean", "checked_right", "unchecked_right", "criteria")
    return {k: s[k] for k in keys} | {
        "base_reading": s.get("base_reading", {}),  # absent in runs made before the reading stage
        "criteria_met": s["criteria_met"],
        "seconds": s["seconds"]["total"],
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(ci: Sequence[float] | None, scale: float = 100.0, unit: str = "") -> str:
    return "" if not ci else f" [{scale * ci[0]:.1f}, {scale * ci[1]:.1f}]{unit}"


def render_aggregate(summary: dict[str, Any], curves: dict[int, list[Curve]]) -> str:
    seeds = summary["seeds"]
    met = summary["criteria_met"]
    lines = [
        f"# R1-Zero on a tiny model: {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        "",
        f"**Result: {'every criterion met, for every seed' if met else 'criteria NOT all met'}.** "
        "Means over seeds with 95% intervals: across seeds (t) and, for the gains, a per-problem paired "
        "bootstrap pooled over the seeds. Each seed ran the whole pipeline on its own test problems.",
        "",
        "## Held-out test accuracy (gain in points)",
        "",
        "| family | metric | base | RL | gain | gain 95% CI (seeds) | gain 95% CI (bootstrap) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in summary["families"].items():
        for metric in ("pass@1", "greedy"):
            gain = f["gain"]
            lines.append(
                f"| {name} | {metric} | {_pct(f['base'][metric])} | {_pct(f['rl'][metric])} | "
                f"{100 * gain[metric]:+.1f} |{_ci(gain['ci95'][metric])} |{_ci(gain['bootstrap_ci95'][metric])} |"
            )
    share, length = summary["self_check_share"], summary["length_mean"]
    checked, unchecked = summary["checked_right"], summary["unchecked_right"]
    lines += [
        "",
        "## Thinking longer and checking (test problems, T 0.6 samples)",
        "",
        "| | base | RL |",
        "|---|---:|---:|",
        f"| mean response length (tokens) | {length['base']:.1f}{_ci(length['ci95']['base'], 1.0)} | "
        f"{length['rl']:.1f}{_ci(length['ci95']['rl'], 1.0)} |",
        f"| self-checking share | {_pct(share['base'])}{_ci(share['ci95']['base'])} | "
        f"{_pct(share['rl'])}{_ci(share['ci95']['rl'])} |",
        f"| right when checked | {_pct(checked['base'])} | {_pct(checked['rl'])} |",
        f"| right when not checked | {_pct(unchecked['base'])} | {_pct(unchecked['rl'])} |",
        "",
        "## Per seed",
        "",
        "| seed | "
        + " | ".join(f"{n} pass@1 / greedy (base → RL)" for n in summary["families"])
        + " | base reads operands | length (base → RL) | self-checking (base → RL) | criteria | seconds |",
        "|---|" + "---|" * (len(summary["families"]) + 5),
    ]
    for seed in seeds:
        s = summary["per_seed"][str(seed)]
        cells = [
            f"{_pct(f['base']['pass@1'])} → {_pct(f['rl']['pass@1'])} / "
            f"{_pct(f['base']['greedy'])} → {_pct(f['rl']['greedy'])}"
            for f in s["families"].values()
        ]
        passed = sum(c["passed"] for c in s["criteria"])
        reads = ", ".join(_pct(share) for share in s["base_reading"].values()) or "—"
        lines.append(
            f"| {seed} | "
            + " | ".join(cells)
            + f" | {reads} | {s['length_mean']['base']:.1f} → {s['length_mean']['rl']:.1f} | "
            f"{_pct(s['self_check_share']['base'])} → {_pct(s['self_check_share']['rl'])} | "
            f"{passed}/{len(s['criteria'])} | {s['seconds']:.0f} |"
        )
    lines += [
        "",
        "## During GRPO: held-out validation problems (T 0.6), one line per seed",
        "",
        f"![validation curves]({VALIDATION_FILE})",
        "",
        "| seed | " + " | ".join(f"step {p.step}" for p in curves[seeds[0]]) + " |",
        "|---|" + "---:|" * len(curves[seeds[0]]),
    ]
    for seed in seeds:
        cells = [
            f"{100 * p.accuracy:.0f}% / {p.length:.0f} / {100 * p.self_check:.0f}%" for p in curves[seed]
        ]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines += ["", "(accuracy / mean length in tokens / self-checking share)", "", "## Criteria", ""]
    lines += ["| criterion | required | met |", "|---|---|:---:|"]
    for c in summary["criteria"]:
        failed = f" (failed: {'; '.join(c['failed'])})" if c.get("failed") else ""
        lines.append(f"| {c['name']}{failed} | {c['required']} | {'yes' if c['passed'] else 'NO'} |")
    seconds = summary["seconds"]
    lines += [
        "",
        "## Time",
        "",
        ", ".join(f"seed {s}: {v:.0f} s" for s, v in seconds["per_seed"].items())
        + f"; total {seconds['total']:.0f} s.",
        "",
        "Each seed's own report: "
        + ", ".join(f"[seed {s}]({Path(p).name}/report.md)" for s, p in summary["runs"].items()),
        "",
    ]
    return "\n".join(lines)


def _log_stage(stage: str, event: str, info: dict[str, Any]) -> None:
    if event != "start":
        log.info("%s %s in %.1f s", stage, event, info.get("seconds", 0.0))


def _run_seed_process(recipe: Recipe, run_dir: Path, seed: int, resume: bool) -> Path:
    """One seed in a worker process (module docstring): one thread, progress through logging."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )

    def hook(stage: str, event: str, info: dict[str, Any]) -> None:
        _log_stage(f"seed {seed}: {stage}", event, info)

    run_r1zero(recipe, run_dir, seed, resume=resume, on_stage=hook)
    return run_dir


def run_r1zero_seeds(
    recipe: Recipe,
    out_dir: str | Path,
    seeds: Sequence[int],
    *,
    resume: bool = False,
    jobs: int = 1,
    on_stage: StageHook | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run the pipeline for every seed in `OUT/seed-N/`, then aggregate (module docstring).

    `resume` is passed to each seed's run, so a killed multi-seed run continues where it stopped.
    `jobs` seeds run at once in worker processes, which report through logging; with `jobs=1` they
    run here, `on_stage` hears every stage and `kwargs` go to `run_r1zero` (progress, threads).
    """
    out = Path(out_dir)
    if jobs < 1:
        raise ValueError(f"jobs = {jobs}: expected an integer >= 1")
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} is not empty: pass resume (--resume) or choose another --out")
    dirs = {seed: out / f"seed-{seed}" for seed in seeds}
    runs: dict[int, R1ZeroResult] = {}
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_run_seed_process, recipe, dirs[seed], seed, resume and dirs[seed].exists())
                for seed in seeds
            ]
            for future in futures:
                future.result()  # a failed seed raises here, with its traceback
        for seed in seeds:  # every stage is done: this reads the run back
            runs[seed] = run_r1zero(recipe, dirs[seed], seed, resume=True)
        return aggregate(out, runs)
    for seed in seeds:

        def hook(stage: str, event: str, info: dict[str, Any], seed: int = seed) -> None:
            if on_stage is not None:
                on_stage(f"seed {seed}: {stage}", event, info)

        runs[seed] = run_r1zero(
            recipe, dirs[seed], seed, resume=resume and dirs[seed].exists(), on_stage=hook, **kwargs
        )
    return aggregate(out, runs)
