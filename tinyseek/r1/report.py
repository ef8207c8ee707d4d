"""report.md, plots/rl_curves.png and summary.json of an r1 run, from its files alone.

Design choices:
- Everything is read back from the run directory (the arms' `eval/<arm>.json` and per-problem
  records, the GRPO runs' metrics.jsonl, the trace counts, the SFT and RL compute records), so a
  resumed run rebuilds the same report, and every figure is one the run produced.
- The three findings of the issue are checked against fixed thresholds (`R1_MIN_CONSISTENCY`,
  `R1_MAX_PASS_DROP`, `DISTILL_MIN_GAIN`) and stated as reproduced or not, with the numbers; the
  differences between arms are paired per-problem bootstraps on the same test problems.
- Plots use matplotlib's Agg backend through an explicit `Figure` (no pyplot global state).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyseek.checkpoint.run import write_text_atomically
from tinyseek.r1.measure import load_scores, paired_difference
from tinyseek.r1.recipe import R1Recipe

R1_MIN_CONSISTENCY = 0.95  # the R1 arm's language consistency on every language
R1_MAX_PASS_DROP = 0.03  # the R1 arm's pass@1 may trail the R1-Zero arm's by at most this
DISTILL_MIN_GAIN = 0.10  # distilled student over the RL-only student, pass@1, all languages
CURVES_FILE = "plots/rl_curves.png"
RL_RUNS = {
    "r1zero_grpo": "R1-Zero arm",
    "rl1": "R1 arm: RL 1",
    "rl2": "R1 arm: RL 2",
    "student_rl": "student: RL only",
}
CURVES = {
    "reward/total/mean": "total reward",
    "reward/language/mean": "language consistency",
    "completion_length/mean": "completion length (tokens)",
}
ARM_TITLES = {
    "base": "base (pretrained)",
    "r1zero": "R1-Zero arm",
    "r1": "R1 arm",
    "distilled": "student, distilled",
    "student_rl": "student, RL only",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _ci(row: dict[str, Any], metric: str) -> str:
    ci = row.get(f"{metric}_ci95")
    value = _pct(row.get(metric))
    return value if not ci else f"{value} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _length(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _curves(out: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    from tinyseek.train.metrics import read_metrics

    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run in RL_RUNS:
        series: dict[str, list[tuple[int, float]]] = {key: [] for key in CURVES}
        for record in read_metrics(out / run):
            for key in CURVES:
                if isinstance(record.get(key), (int, float)):
                    series[key].append((int(record["step"]), float(record[key])))
        curves[run] = series
    return curves


def plot_curves(out: Path, curves: dict[str, dict[str, list[tuple[int, float]]]]) -> Path:
    """One panel per curve (reward, language consistency, length) against the RL step, a line per RL run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(figure)
    for index, (key, label) in enumerate(CURVES.items()):
        axes = figure.add_subplot(1, len(CURVES), index + 1)
        for run, title in RL_RUNS.items():
            points = curves[run][key]
            if points:
                axes.plot([s for s, _ in points], [v for _, v in points], label=title, marker=".")
        axes.set_xlabel("RL step")
        axes.set_title(label)
        axes.grid(alpha=0.3)
        if index == 0:
            axes.legend(fontsize=8)
    figure.tight_layout()
    path = out / CURVES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _params(out: Path) -> dict[str, Any]:
    from tinyseek.config import ModelConfig
    from tinyseek.model_size import ModelSize

    teacher = ModelSize(ModelConfig.from_pretrained(out / "pretrain" / "model"))
    student = ModelSize(ModelConfig.from_pretrained(out / "pretrain_student" / "model"))
    return {
        "teacher_total": teacher.total,
        "teacher_activated": teacher.activated,
        "student_total": student.total,
        "student_over_teacher_activated": student.activated / teacher.activated,
    }


def findings(arms: dict[str, Any], out: Path, langs: Sequence[str], seed: int) -> dict[str, Any]:
    """The issue's three findings, measured: numbers, thresholds and whether each reproduced."""
    scores = {
        arm: load_scores(out / "eval" / arm, langs) for arm in ("r1zero", "r1", "distilled", "student_rl")
    }
    compute = json.loads((out / "student_rl" / "compute.json").read_text())
    r1_pass = paired_difference(scores["r1"], scores["r1zero"], seed=seed)
    distill = paired_difference(scores["distilled"], scores["student_rl"], seed=seed)
    premise = paired_difference(scores["r1"], scores["student_rl"], seed=seed)
    consistency = {lang: arms["r1"][lang]["language_consistency"] for lang in langs}
    return {
        "r1zero_language_consistency": {lang: arms["r1zero"][lang]["language_consistency"] for lang in langs},
        "r1_language_consistency": {
            "values": consistency,
            "required": R1_MIN_CONSISTENCY,
            "passed": all(v is not None and v >= R1_MIN_CONSISTENCY for v in consistency.values()),
        },
        "r1_minus_r1zero_pass@1": {**r1_pass, "required": -R1_MAX_PASS_DROP, "passed": r1_pass["difference"] >= -R1_MAX_PASS_DROP},
        "distilled_minus_student_rl_pass@1": {
            **distill,
            "required": DISTILL_MIN_GAIN,
            "distill_flops": compute["distill_flops"],
            "student_rl_flops": compute["flops"],
            "student_rl_steps": compute["steps"],
            "passed": distill["difference"] >= DISTILL_MIN_GAIN and compute["flops"] >= compute["distill_flops"],
        },
        # The finding presupposes a teacher above what RL gives the small model; measured, not assumed.
        "teacher_minus_student_rl_pass@1": premise,
    }  # fmt: skip


def _timeline(seconds: dict[str, float]) -> list[dict[str, Any]]:
    rows, start = [], 0.0
    for name, value in seconds.items():
        rows.append({"stage": name, "start_s": start, "seconds": value})
        start += value
    return rows


def _findings_text(f: dict[str, Any]) -> list[str]:
    def verdict(ok: bool) -> str:
        return "**reproduced**" if ok else "**not reproduced**"

    zero = f["r1zero_language_consistency"]
    r1c, gap, dist = (
        f["r1_language_consistency"],
        f["r1_minus_r1zero_pass@1"],
        f["distilled_minus_student_rl_pass@1"],
    )
    return [
        "1. Language mixing in the R1-Zero arm (share of the reasoning in the prompt's language): "
        + ", ".join(f"{lang} {_pct(v)}" for lang, v in zero.items()) + ".",
        f"2. R1 arm's language consistency ≥ {_pct(r1c['required'])} on every language: "
        + ", ".join(f"{lang} {_pct(v)}" for lang, v in r1c["values"].items())
        + f" — {verdict(r1c['passed'])}; pass@1 R1 − R1-Zero {100 * gap['difference']:+.1f} points "
        f"[{100 * gap['ci95'][0]:+.1f}, {100 * gap['ci95'][1]:+.1f}] (required ≥ {100 * gap['required']:+.1f}) — "
        f"{verdict(gap['passed'])}.",
        f"3. Distilled student − RL-only student, pass@1 (all languages): {100 * dist['difference']:+.1f} points "
        f"[{100 * dist['ci95'][0]:+.1f}, {100 * dist['ci95'][1]:+.1f}] (required ≥ +{100 * dist['required']:.0f}) at "
        f"{dist['distill_flops']:.3g} vs {dist['student_rl_flops']:.3g} training FLOPs ({dist['student_rl_steps']} RL steps) — "
        f"{verdict(dist['passed'])}.",
        *_premise_text(f),
    ]  # fmt: skip


def _premise_text(f: dict[str, Any]) -> list[str]:
    """Whether the teacher was stronger than the RL-only student, the paper's premise for finding 3."""
    premise = f["teacher_minus_student_rl_pass@1"]
    gap = f"{100 * premise['difference']:+.1f} points [{100 * premise['ci95'][0]:+.1f}, {100 * premise['ci95'][1]:+.1f}]"
    if premise["ci95"][0] > 0:
        return [f"   The teacher (R1 arm) is above the RL-only student: {gap} pass@1, the paper's premise."]
    return [
        f"   The paper's premise does not hold here: teacher (R1 arm) − RL-only student {gap} pass@1; "
        "the teacher is not clearly above what RL gives the student on its own."
    ]  # fmt: skip


def render(summary: dict[str, Any], langs: Sequence[str]) -> str:
    arms = summary["arms"]
    head = "| arm | pass@1 [95% CI] | greedy | format | language consistency [95% CI] | reasoning length (tokens) | problems |"
    rule = "|---|---|---|---|---|---|---|"

    def row(title: str, r: dict[str, Any]) -> str:
        return (
            f"| {title} | {_ci(r, 'pass@1')} | {_pct(r['greedy'])} | {_pct(r['format'])} | "
            f"{_ci(r, 'language_consistency')} | {_length(r['reasoning_length'])} | {r['problems']} |"
        )

    lines = [
        "# tinyseek r1: DeepSeek-R1's recipe in miniature",
        "",
        f"`tinyseek r1 --out {summary['out_dir']} --seed {summary['seed']}`; {summary['seconds']['total']:.0f} s of stages. "
        "Test problems are the same for every arm in every language; pass@1 over k = "
        f"{summary['eval']['k']} samples at T {summary['eval']['temperature']}, top-p {summary['eval']['top_p']}; "
        "intervals: 95% per-problem bootstrap. Language consistency: share of the reasoning's words in the "
        "prompt's language, over samples with any words (`tinyseek.tasks.language`).",
        "",
        "## Findings",
        "",
        *_findings_text(summary["findings"]),
        "",
        "## Arms, all languages",
        "",
        head,
        rule,
        *(row(ARM_TITLES[arm], arms[arm]["all"]) for arm in arms),
    ]
    for lang in langs:
        lines += ["", f"## {lang}", "", head, rule, *(row(ARM_TITLES[arm], arms[arm][lang]) for arm in arms)]
    p = summary["params"]
    lines += [
        "",
        "## Data and compute",
        "",
        f"- Teacher: {p['teacher_total']:,} parameters, {p['teacher_activated']:,} activated; dense student "
        f"{p['student_total']:,} ({p['student_over_teacher_activated']:.2f} of the teacher's activated).",
    ]
    for stage, counts in summary["traces"].items():
        lines.append(
            f"- {stage} traces per language (sampled problems / kept from the model / filled from worked solutions): "
            + "; ".join(f"{lang} {c['problems']} / {c['kept']} / {c['filled']}" for lang, c in counts.items())
        )
    lines += [
        "- Training FLOPs (tinyseek.cost.flops; GRPO: generated tokens at decode cost + the update's tokens, prompt "
        "prefill not counted): " + ", ".join(f"{k} {v:.3g}" for k, v in summary["flops"].items()),
        "",
        "## Stage timeline",
        "",
        "| stage | starts at (s) | seconds |",
        "|---|---|---|",
        *(f"| {r['stage']} | {r['start_s']:.0f} | {r['seconds']:.1f} |" for r in summary["timeline"]),
        "",
        "## RL curves",
        "",
        f"![reward, language consistency and length against RL step]({CURVES_FILE})",
        "",
    ]
    return "\n".join(lines)


def write_report(
    out: Path,
    recipe: R1Recipe,
    seed: int,
    langs: Sequence[str],
    arms: Sequence[str],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Write plots, report.md and (last: it marks the stage done) summary.json; return the summary."""
    figures = {arm: json.loads((out / "eval" / f"{arm}.json").read_text()) for arm in arms}
    flops = {
        name: float(json.loads((out / name / "result.json").read_text())["flops"])
        for name in ("cold_start_sft", "sft", "distill")
    }
    flops["student_rl"] = float(json.loads((out / "student_rl" / "compute.json").read_text())["flops"])
    e = recipe.eval
    timings = {k: v for k, v in seconds.items() if k != "report"}
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "seed": seed,
        "arms": figures,
        "findings": findings(figures, out, langs, seed),
        "eval": {"k": e.k, "temperature": e.temperature, "top_p": e.top_p, "split": "test"},
        "traces": {
            name: json.loads((out / name / "counts.json").read_text()) for name in ("cold_start", "rejection")
        },
        "params": _params(out),
        "flops": flops,
        "timeline": _timeline(timings),
        "seconds": {**timings, "total": sum(timings.values())},
    }
    plot_curves(out, _curves(out))
    write_text_atomically(out / "report.md", render(summary, langs))
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
