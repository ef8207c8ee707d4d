"""`tinyseek r1zero`: the whole R1-Zero pipeline (tokenizer, pretraining, eval, GRPO, eval, report).

Train a tokenizer and a tiny MLA + MoE base model on column arithmetic where most documents answer
directly and the rest work the problem, half of them checking their work, evaluate it on held-out
problems, run pure GRPO (no SFT, accuracy reward only), evaluate again on the same problems and write
OUT/report.md, plots, OUT/summary.json and the trained model OUT/model (HF layout). --seeds runs the
whole pipeline per seed and aggregates with 95% intervals.

A thin layer over `tinyseek.r1zero.pipeline.run_r1zero`: picks the recipe preset, prints one line per
stage as it starts and ends, then the figures and how to chat with or serve the trained model. Under
`torchrun --nproc-per-node N -m tinyseek r1zero ...` every stage runs over the ranks (pretraining and
GRPO sharded, evaluations split by problem) and rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# Spelled out rather than imported so `tinyseek --help` does not import torch; Recipe.preset checks it.
PRESETS = ("r1zero", "smoke")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    summary = "DeepSeek-R1-Zero in miniature: pretrain a base model, pure GRPO, evaluate before/after"
    p = sub.add_parser("r1zero", help=summary, description=__doc__)
    p.add_argument("--out", default="runs/r1zero", help="run directory (default runs/r1zero)")
    p.add_argument("--seed", type=int, default=0, help="offset added to every seed of the recipe")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="S,S,...",
        help="run the whole pipeline once per seed (OUT/seed-N/) and aggregate them with 95%% intervals "
        "in OUT/report.md and OUT/summary.json, e.g. --seeds 0,1,2 (~30 minutes on 2 CPU cores)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with --seeds: seeds run at once, each in its own process with one thread (default 1; "
        "on 2 cores, 3 for three seeds keeps both cores busy to the end, where 2 leaves one idle "
        "while the last seed runs alone)",
    )
    add_pipeline_arguments(
        p, PRESETS, "recipe: r1zero (the demo, ~10 minutes on 2 CPU cores) or smoke (every stage in seconds)"
    )
    p.set_defaults(func=run)


def add_pipeline_arguments(p: argparse.ArgumentParser, presets: tuple[str, ...], preset_help: str) -> None:
    """--preset (default: the first of `presets`), --resume, --threads, --pretrain-threads and --json:
    what every pipeline command (r1zero, r1) takes."""
    p.add_argument("--preset", choices=presets, default=presets[0], help=preset_help)
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the stages OUT already holds and continue interrupted ones from their checkpoints",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; the tiny model is often faster with 1)",
    )
    p.add_argument(
        "--pretrain-threads",
        type=int,
        default=None,
        help="intra-op threads for pretraining, and in r1 for SFT and distillation (default: --threads); "
        "their matmuls gain from a second core where decoding does not",
    )
    p.add_argument("--json", action="store_true", help="print summary.json's figures as JSON at the end")


def apply_threads(args: argparse.Namespace) -> None:
    """Check --threads / --pretrain-threads and set torch's intra-op threads from --threads."""
    for flag in ("threads", "pretrain_threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} {value}: expected an integer >= 1")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _print_stage(stage: str, event: str, info: dict[str, Any], prefix: str = "r1zero") -> None:
    """One line per stage event on stderr (`tinyseek r1` prints its stages the same way)."""
    if event == "start":
        print(f"[{prefix}] {stage} ...", file=sys.stderr, flush=True)
        return
    details = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items() if k != "seconds"
    )
    verb = "skipped (already done)" if event == "skipped" else "done"
    print(f"[{prefix}] {stage} {verb} in {info.get('seconds', 0.0):.1f}s{': ' + details if details else ''}",
          file=sys.stderr, flush=True)  # fmt: skip


def _print_behaviour(summary: dict[str, Any]) -> str:
    """Print the self-checking share and response length before and after RL; return the criteria line."""
    share, length = summary["self_check_share"], summary["length_mean"]
    print(f"self-checking share: {_pct(share['base'])} -> {_pct(share['rl'])}")
    print(f"mean response length: {length['base']:.1f} -> {length['rl']:.1f} tokens")
    met = sum(c["passed"] for c in summary["criteria"])
    return f"criteria met: {met}/{len(summary['criteria'])}"


def _print_summary(summary: dict[str, Any]) -> None:
    print("\nfamily          base pass@1  RL pass@1  base greedy  RL greedy  problems")
    for name, f in summary["families"].items():
        print(
            f"{name:<15} {_pct(f['base']['pass@1']):>11}  {_pct(f['rl']['pass@1']):>9}  "
            f"{_pct(f['base']['greedy']):>11}  {_pct(f['rl']['greedy']):>9}  {f['problems']:>8}"
        )
    print(_print_behaviour(summary))
    seconds = summary["seconds"]
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"\nreport: {summary['out_dir']}/report.md")
    print(f"chat with the model:  tinyseek chat --model {summary['model']}")
    print(f"serve it:             tinyseek serve --model {summary['model']}")
    print(f"price the run:        tinyseek cost --measured {summary['out_dir']}")


def _print_aggregate(summary: dict[str, Any], out: str) -> None:
    def ci(values: list[float] | None) -> str:
        return f" [{100 * values[0]:+.1f}, {100 * values[1]:+.1f}]" if values else ""

    print(f"\n{len(summary['seeds'])} seeds; gains in points, mean and 95% CI (bootstrap over problems)")
    for name, f in summary["families"].items():
        gain = f["gain"]
        print(
            f"{name:<15} pass@1 {100 * f['base']['pass@1']:.1f}% -> {100 * f['rl']['pass@1']:.1f}% "
            f"({100 * gain['pass@1']:+.1f}{ci(gain['bootstrap_ci95']['pass@1'])}), greedy "
            f"{100 * f['base']['greedy']:.1f}% -> {100 * f['rl']['greedy']:.1f}% "
            f"({100 * gain['greedy']:+.1f}{ci(gain['bootstrap_ci95']['greedy'])})"
        )
    print(f"{_print_behaviour(summary)}; seconds {summary['seconds']['total']:.0f}")
    print(f"\nreport: {out}/report.md")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from tinyseek.r1zero.pipeline import run_r1zero
    from tinyseek.r1zero.recipe import Recipe
    from tinyseek.stages import StageInterrupted
    from tinyseek.train.parallel_run import is_main_process, launched_distributed

    if args.seeds is not None and launched_distributed():
        raise ValueError("--seeds runs its own processes; under torchrun run one seed (--seed) per launch")
    apply_threads(args)
    recipe = Recipe.preset(args.preset)
    bar: Any = None

    def pretrain_progress(step: int, max_steps: int, record: dict[str, Any]) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(desc="pretrain", unit="step", file=sys.stderr)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record.get('tokens_per_s', 0):.0f}")

    def on_stage(stage: str, event: str, info: dict[str, Any]) -> None:
        nonlocal bar
        if stage.endswith("pretrain") and event == "done" and bar is not None:
            bar.close()
            bar = None  # the next seed's pretraining gets its own bar
        _print_stage(stage, event, info)

    reporting: dict[str, Any] = {
        "on_stage": on_stage,
        "pretrain_progress": pretrain_progress,
        "show_progress": True,
        "pretrain_threads": args.pretrain_threads,
    }
    try:
        if args.seeds is not None:
            from tinyseek.r1zero.seeds import parse_seeds, run_r1zero_seeds

            seeds = parse_seeds(args.seeds)
            summary = run_r1zero_seeds(
                recipe, args.out, seeds, resume=args.resume, jobs=args.jobs, **reporting
            )
        else:
            summary = run_r1zero(recipe, args.out, seed=args.seed, resume=args.resume, **reporting).summary
    except StageInterrupted as err:
        print(f"[r1zero] {err}; rerun with --resume to continue", file=sys.stderr)
        return 130
    if not is_main_process():  # under torchrun rank 0 prints
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.seeds is not None:
        _print_aggregate(summary, args.out)
    else:
        _print_summary(summary)
    return 0
