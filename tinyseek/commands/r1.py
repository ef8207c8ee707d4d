"""`tinyseek r1`: DeepSeek-R1's four-stage recipe and distillation finding, from tokenizer to report.

Pretrain a tokenizer and a tiny MLA + MoE base on column arithmetic in English, French and Chinese
(an uneven mix with some code-switching) and a dense student a third its size; run the R1-Zero arm
(pure GRPO, accuracy only), the R1 arm (cold start SFT, RL with accuracy + format + language
consistency, rejection sampling + SFT, second RL), distil the R1 arm's traces into the student and
train the same student by pure GRPO at no less compute; evaluate every arm on the same test problems
in every language and write OUT/report.md, OUT/plots/ and OUT/summary.json.

A thin layer over `tinyseek.r1.pipeline.run_r1`: picks the recipe preset, prints one line per stage
as it starts and ends, then the arms' figures and the findings.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tinyseek.commands.r1zero import _print_stage, add_pipeline_arguments, apply_threads

# Spelled out rather than imported so `tinyseek --help` does not import torch; R1Recipe.preset checks it.
PRESETS = ("r1", "smoke")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    summary = (
        "DeepSeek-R1's recipe in miniature: R1-Zero arm, R1 arm (cold start, RL, rejection, RL), distillation"
    )
    p = sub.add_parser("r1", help=summary, description=__doc__)
    p.add_argument(
        "--out", required=True, help="run directory (required: a run takes a directory of its own)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="added to every seed of the recipe (another run of it)"
    )
    add_pipeline_arguments(
        p, PRESETS, "recipe: r1 (the full run, ≤ 30 minutes on 2 CPU cores) or smoke (every stage in seconds)"
    )
    p.set_defaults(func=run)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def run(args: argparse.Namespace) -> int:
    from tinyseek.r1.pipeline import run_r1
    from tinyseek.r1.recipe import R1Recipe
    from tinyseek.stages import RunHooks, StageInterrupted

    apply_threads(args)
    recipe = R1Recipe.preset(args.preset)

    def on_stage(stage: str, event: str, info: dict[str, Any]) -> None:
        _print_stage(stage, event, info, prefix="r1")

    hooks = RunHooks(on_stage, show_progress=True, pretrain_threads=args.pretrain_threads)
    try:
        summary = run_r1(recipe, args.out, seed=args.seed, resume=args.resume, hooks=hooks).summary
    except StageInterrupted as err:
        print(f"[r1] {err}; rerun with --resume to continue", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\narm          pass@1   greedy   format   language   length   (all languages)")
    for arm, figures in summary["arms"].items():
        f = figures["all"]
        length = "-" if f["reasoning_length"] is None else f"{f['reasoning_length']:.1f}"
        print(
            f"{arm:<12} {_pct(f['pass@1']):>7}  {_pct(f['greedy']):>7}  {_pct(f['format']):>7}  "
            f"{_pct(f['language_consistency']):>9}  {length:>7}"
        )
    print("\nfindings:")
    for key, value in summary["findings"].items():
        print(f"  {key}: {json.dumps(value)}")
    print(f"\nreport: {args.out}/report.md")
    return 0
