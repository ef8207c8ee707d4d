"""What the r1zero report and summary read back from a finished run's files.

- `validation_curves`: the GRPO loop's periodic evaluations (`grpo/samples/eval-step-*.jsonl`, the
  held-out validation split at T 0.6) as one `Curve` point per evaluation: accuracy, mean response
  length and self-checking share, the three curves of the R1 paper.
- `problem_scores`: per family, each test problem's pass@1 (mean over its k samples) and greedy score,
  from an evaluation's records, ordered by the canonical problem so that base and RL line up.
- `gain_intervals`: the per-problem paired bootstrap of each family's base → RL gain.
Reading files rather than keeping objects in memory lets a resumed run (or `--seeds`' aggregate)
rebuild every figure from the run directory alone.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from tinyseek.r1zero.intervals import bootstrap_gain
from tinyseek.r1zero.report import Curve
from tinyseek.r1zero.self_check import is_self_checking

Scores = dict[str, dict[str, list[float]]]  # family -> "pass@1" | "greedy" -> one score per problem


def validation_curves(grpo_dir: str | Path) -> list[Curve]:
    """One point per periodic evaluation of the GRPO run, from its sampled (T 0.6) completions."""
    points = []
    for path in sorted(Path(grpo_dir, "samples").glob("eval-step-*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        sampled = [row for row in rows if row.get("mode") == "sampled"]
        if not sampled:
            continue
        points.append(
            Curve(
                step=int(sampled[0]["step"]),
                accuracy=statistics.fmean(float(row["score"]) for row in sampled),
                length=statistics.fmean(float(row["tokens"]) for row in sampled),
                self_check=statistics.fmean(is_self_checking(row["completion"]) for row in sampled),
            )
        )
    return sorted(points, key=lambda p: p.step)


def problem_scores(report_file: str | Path) -> Scores:
    """Per family and metric, the per-problem scores of an `EvalReport.to_json(include_records=True)`."""
    data = json.loads(Path(report_file).read_text(encoding="utf-8"))
    records = sorted(data["records"], key=lambda r: (r["task"], r["canonical"]))
    scores: Scores = {}
    for record in records:
        family = scores.setdefault(record["task"], {"pass@1": [], "greedy": []})
        family["pass@1"].append(statistics.fmean(float(s["correct"]) for s in record["samples"]))
        if record.get("greedy") is not None:
            family["greedy"].append(float(record["greedy"]["correct"]))
    return scores


def gain_intervals(base: Scores, rl: Scores, seed: int = 0) -> dict[str, dict[str, tuple[float, float]]]:
    """95% bootstrap interval of each family's gain, from several runs' (base, rl) score pairs."""
    return {
        family: {
            metric: bootstrap_gain([(base[family][metric], rl[family][metric])], seed=seed)
            for metric in ("pass@1", "greedy")
            if base[family][metric]
        }
        for family in base
    }
