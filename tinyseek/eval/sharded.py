"""Evaluation split over torchrun's ranks: each rank scores a block of the problems, one merged report.

    report = evaluate_sharded(llm, sets, k=4)      # under torchrun: every rank calls it, all get the report

Design choices:
- The problems of every family are laid end to end and cut into contiguous blocks, one per rank
  (tinyseek.parallel.ranks.shard_range); each rank runs the ordinary `evaluate` (or
  `evaluate_prompts`) on its block with its own engine. A problem's samples are seeded from the
  problem itself, so they are the same whichever rank draws them and however many ranks there are.
- The per-problem records are gathered in rank order, which is the problems' global order, and the
  metrics are computed again from them by the functions one process uses (`family_metrics`), so the
  merged report equals one process's, sample for sample and number for number. `seconds` is the
  slowest rank's (the wall time), `generated_tokens` the sum.
- Without a process group both functions are the plain ones: commands call these in every case.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from tinyseek.eval.problems import ProblemSet
from tinyseek.eval.runner import EvalReport, check_sets, evaluate, evaluate_prompts, family_metrics
from tinyseek.inference.llm import LLM
from tinyseek.parallel.ranks import gather_objects, rank_and_world, shard_range
from tinyseek.tasks.completion import FormatStyle, PromptItem


def evaluate_sharded(
    llm: LLM, sets: ProblemSet | Sequence[ProblemSet], k: int = 4, **options: Any
) -> EvalReport:
    """`evaluate(llm, sets, k, **options)` with the problems split over the ranks; every rank returns
    the whole report."""
    rank, world = rank_and_world()
    if world == 1:
        return evaluate(llm, sets, k, **options)
    sets = check_sets(sets, k)
    flat = [(i, problem) for i, s in enumerate(sets) for problem in s.problems]
    mine = [flat[j] for j in shard_range(len(flat), rank, world)]
    blocks = [
        ProblemSet(s.task, tuple(p for i, p in mine if i == index), s.lang) for index, s in enumerate(sets)
    ]
    blocks = [b for b in blocks if b.problems]
    local = evaluate(llm, blocks, k, **options) if blocks else None
    parts = gather_objects(local)
    reports = [r for r in parts if r is not None]
    records = [record for r in reports for record in r.records]
    families = {
        s.name: family_metrics([r for r in records if r.task == s.name and r.lang == s.lang], k) for s in sets
    }
    settings = {
        **reports[0].settings,
        "tasks": [s.name for s in sets],
        "langs": sorted({s.lang for s in sets}),
    }
    return EvalReport(
        settings, families, family_metrics(records, k), records,
        max(r.seconds for r in reports), sum(r.generated_tokens for r in reports),
    )  # fmt: skip


def evaluate_prompts_sharded(
    llm: LLM, items: Sequence[PromptItem], style: FormatStyle, max_tokens: int, seeds: Sequence[int]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """`evaluate_prompts` (GRPO's periodic evaluation) with the items split over the ranks; every rank
    returns the metrics and rows of all of them, greedy rows first as one process orders them."""
    rank, world = rank_and_world()
    if world == 1:
        return evaluate_prompts(llm, items, style, max_tokens, seeds)
    mine = shard_range(len(items), rank, world)
    local = (
        evaluate_prompts(llm, [items[i] for i in mine], style, max_tokens, [seeds[i] for i in mine])[1]
        if len(mine)
        else []
    )
    parts = gather_objects(local)
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for mode in ("greedy", "sampled"):
        chosen = [row for part in parts for row in part if row["mode"] == mode]
        metrics[f"eval/{mode}_accuracy"] = statistics.fmean(row["score"] for row in chosen)
        metrics[f"eval/{mode}_length"] = statistics.fmean(row["tokens"] for row in chosen)
        rows += chosen
    metrics["eval/problems"] = float(len(items))
    return metrics, rows
