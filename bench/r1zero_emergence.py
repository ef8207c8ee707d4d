"""The emergence curve of an r1zero base: held-out accuracy against pretraining tokens.

A skill that appears abruptly (docs/architecture.md: 3-digit addition at a few million tokens)
decides whether RL has anything to build on; a recipe must train well past the jump, or a seed or a
CPU's kernels decide the outcome. This reads the pretraining checkpoints an r1zero run keeps
(`PretrainRecipe.checkpoints`, evenly spaced) and evaluates each on VALIDATION problems (never the
test ones): greedy accuracy, pass@1 over k samples at T 0.6, and how often the sampled completions
reason at all (a non-empty think block) or check.

    python bench/r1zero_emergence.py runs/r1zero            # a one-seed run directory
    python bench/r1zero_emergence.py runs/r1zero-seeds/seed-1 --problems 100
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from tinyseek.eval.problems import problem_sets
from tinyseek.eval.runner import evaluate
from tinyseek.inference.llm import LLM
from tinyseek.r1zero.self_check import is_self_checking


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="an r1zero run directory (with pretrain/checkpoints)")
    parser.add_argument(
        "--problems", type=int, default=100, help="validation problems per family (default 100)"
    )
    parser.add_argument("-k", type=int, default=2, help="samples per problem at T 0.6 (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = json.loads((args.run / "recipe.json").read_text())
    seed = recipe["seed"]
    families = [f["name"] for f in recipe["recipe"]["families"]]
    max_tokens = recipe["recipe"]["eval"]["max_new_tokens"]
    train_config = json.loads((args.run / "pretrain" / "train_config.json").read_text())
    tokens_per_step = train_config["batch_size"] * train_config["seq_len"]
    sets = problem_sets(families, args.problems, 1000 + seed, 1, "validation")
    print(
        "| tokens | " + " | ".join(f"{f} greedy | {f} pass@1" for f in families) + " | reasoning | checking |"
    )
    print("|---:|" + "---:|" * (2 * len(families) + 2))
    checkpoints = sorted((args.run / "pretrain" / "checkpoints").glob("step-*"))
    for checkpoint in checkpoints:
        step = int(checkpoint.name.split("-")[1])
        report = evaluate(
            LLM(checkpoint / "model", max_num_seqs=1024), sets, k=args.k, temperature=0.6, top_p=0.95,
            max_tokens=max_tokens, template="r1zero", seed=seed, greedy=True,
        )  # fmt: skip
        texts = [s.text for r in report.records for s in r.samples]
        reasoning = statistics.fmean(not t.lstrip().startswith("<think>\n\n</think>") for t in texts)
        checking = statistics.fmean(is_self_checking(t) for t in texts)
        cells = [
            f"{100 * report.families[f]['greedy_accuracy']:.1f}% | {100 * report.families[f]['pass@1']:.1f}%"
            for f in families
        ]
        print(
            f"| {step * tokens_per_step:,} | "
            + " | ".join(cells)
            + f" | {100 * reasoning:.0f}% | {100 * checking:.0f}% |"
        )


if __name__ == "__main__":
    main()
