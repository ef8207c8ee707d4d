"""What the r1 report measures: per-problem scores of an arm's evaluation, their means with 95%
per-problem bootstrap intervals, and the training FLOPs of an SFT or GRPO stage.

- An arm is evaluated once per language on the same test problems (`eval/<arm>/<lang>.json`, the
  evaluation's records). Per problem: pass@1 (mean over its k samples), greedy, format (share of
  well-formed samples), language consistency (mean share of the reasoning in the prompt's language
  over the samples that have any language evidence; a problem whose samples have none, e.g. all
  direct answers, has no value) and reasoning length (mean reasoning tokens). A metric's figure is
  the mean over problems; `all` pools the languages' problems (each language the same count).
- Intervals: a percentile bootstrap over problems (`tinyseek.r1zero.intervals`), for a mean and for
  a paired difference of two arms on the same problems.
- FLOPs (`tinyseek.cost.flops`): SFT = trained tokens x training FLOPs per token at the run's sequence
  length. GRPO = per step, the generated tokens x decode FLOPs per token at the mean context (prompt
  prefill left out: the RL-only student's compute is under-counted, never over-counted) + the tokens
  the update computed x training FLOPs per token. Periodic validation is evaluation, not training.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyseek.r1zero.intervals import bootstrap_gain, bootstrap_mean

METRICS = ("pass@1", "greedy", "format", "language_consistency", "reasoning_length")
INTERVAL_METRICS = ("pass@1", "greedy", "format", "language_consistency")
ProblemScores = dict[tuple[str, str, str], dict[str, float | None]]  # (lang, task, canonical) -> metric


def problem_scores(report: dict[str, Any]) -> ProblemScores:
    """Per problem of an `EvalReport.to_json(include_records=True)`, every metric of METRICS."""
    scores: ProblemScores = {}
    for record in report["records"]:
        samples = record["samples"]
        shares = [s["language"] for s in samples if s.get("language") is not None]
        greedy = record.get("greedy")
        scores[record["lang"], record["task"], record["canonical"]] = {
            "pass@1": statistics.fmean(float(s["correct"]) for s in samples),
            "greedy": None if greedy is None else float(greedy["correct"]),
            "format": statistics.fmean(float(s["well_formed"]) for s in samples),
            "language_consistency": statistics.fmean(shares) if shares else None,
            "reasoning_length": statistics.fmean(float(s["reasoning_tokens"]) for s in samples),
        }
    return scores


def load_scores(eval_dir: Path, langs: Sequence[str]) -> ProblemScores:
    scores: ProblemScores = {}
    for lang in langs:
        scores.update(problem_scores(json.loads((eval_dir / f"{lang}.json").read_text(encoding="utf-8"))))
    return scores


def _values(scores: ProblemScores, lang: str | None, metric: str) -> list[float]:
    return [
        value
        for (problem_lang, _, _), row in sorted(scores.items())
        if (lang is None or problem_lang == lang) and (value := row[metric]) is not None
    ]


def arm_metrics(scores: ProblemScores, langs: Sequence[str], seed: int = 0) -> dict[str, dict[str, Any]]:
    """`{lang | "all": {metric: mean, metric_ci95: [lo, hi], "problems": n}}` (None where no value)."""
    out: dict[str, dict[str, Any]] = {}
    for lang in [*langs, "all"]:
        subset = None if lang == "all" else lang
        row: dict[str, Any] = {"problems": len(_values(scores, subset, "pass@1"))}
        for metric in METRICS:
            values = _values(scores, subset, metric)
            row[metric] = statistics.fmean(values) if values else None
            if metric in INTERVAL_METRICS:
                row[f"{metric}_ci95"] = list(bootstrap_mean(values, seed=seed)) if values else None
        out[lang] = row
    return out


def paired_difference(
    a: ProblemScores, b: ProblemScores, metric: str = "pass@1", seed: int = 0
) -> dict[str, Any]:
    """Mean of `a − b` over the problems both arms scored, with its 95% paired bootstrap interval."""
    shared = sorted(k for k in a.keys() & b.keys() if a[k][metric] is not None and b[k][metric] is not None)
    if not shared:
        raise ValueError(
            f"no problem scored {metric} in both arms: expected evaluations of the same problems"
        )
    first = [float(b[k][metric]) for k in shared]  # type: ignore[arg-type]
    second = [float(a[k][metric]) for k in shared]  # type: ignore[arg-type]
    lo, hi = bootstrap_gain([(first, second)], seed=seed)
    return {
        "difference": statistics.fmean(second) - statistics.fmean(first),
        "ci95": [lo, hi],
        "problems": len(shared),
    }


def sft_flops(config_file: Path, tokens: int, seq_len: int) -> float:
    """Training FLOPs of an SFT run that computed `tokens` tokens at `seq_len`."""
    from tinyseek.config import ModelConfig
    from tinyseek.cost.flops import training_flops_per_token

    return tokens * training_flops_per_token(ModelConfig.from_pretrained(config_file), seq_len).total


def grpo_flops(config_file: Path, records: Sequence[dict[str, Any]], prompt_tokens: int) -> float:
    """Training FLOPs of GRPO steps from their metrics.jsonl records (module docstring); a sequence
    is `prompt_tokens` of prompt and the step's mean completion length."""
    from tinyseek.config import ModelConfig
    from tinyseek.cost.flops import decode_flops_per_token, training_flops_per_token

    cfg = ModelConfig.from_pretrained(config_file)
    total = 0.0
    for record in records:
        if "completion_length/mean" not in record:
            continue  # an evaluation record
        length = float(record["completion_length/mean"])
        generated = length * float(record.get("batch_sequences", 0.0))
        total += generated * decode_flops_per_token(cfg, max(1, round(prompt_tokens + length / 2))).total
        trained = float(record.get("train_tokens_per_s", 0.0)) * float(record.get("train_seconds", 0.0))
        total += trained * training_flops_per_token(cfg, max(1, round(prompt_tokens + length))).total
    return total
