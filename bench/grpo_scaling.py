"""Seconds per GRPO step with 1 and 2 ranks (torchrun, gloo), the same global batch: the speed-up.

Builds the random-weight `tiny` model of bench/grpo.py (MTP off, BPE over R1-Zero addition prompts),
then runs `run_grpo` on it once in one process and once under `torchrun --nproc-per-node 2`, each
rank with one thread (OMP_NUM_THREADS=1), on the same settings: G completions for each of P prompts
a step, the same max length, β = 0, fp32. The settings are rollout-dominated, as R1-style RL is: the
reward is the share of digits in the completion for a fixed quarter of the problems (`INFORMATIVE`,
by a hash of the problem) and 0 for the rest, so, as in the R1-Zero demo where most groups are all
right or all wrong, most groups have no reward variance and skip the backward pass while every
completion is still generated; random weights rarely end early, so most completions run the full
length. Each rank samples its half of the prompts with its own engine, so rollouts should scale;
the update then runs sharded (FSDP2) on the whole batch. The first step of each run is a warm-up;
the median of the others is reported, with the mean completion length (equal in both: the same
samples), and the 1-minute load average before each run (the CPU may be shared).

Default length 128 new tokens: our R1-Zero recipe (tinyseek.r1zero.recipe, G = 8) generates
completions of ≈100-120 tokens (limit 288), and random weights run to the limit, so 128 gives about
the recipe's mean length. The earlier default, 32 new tokens, is `--new-tokens 32`: there the
engine's per-step overhead (independent of the batch) weighs more, so halving a rank's batch saves
less. 32 prompts (G = 8: 256 completions a step) is a larger batch than the recipe's 8 prompts;
`--prompts 8` measures that shape.

Wall-clock seconds need a free core per rank. On a shared machine the script also reports the CPU
seconds each rank spends per step (process time; gloo does not spin while it waits, checked), split
at the update: "train" is the CPU time inside the GRPO update (forward, backward, optimizer, engine
refresh), "rollout" the rest of the step (sampling, scoring, the exchange of groups, logging). The
ranks meet at the end of both phases, so the busiest-rank step figure is the sum over the phases of
the busier rank's CPU time: the step time the ranks would take on idle cores, up to the transfer
time of the collectives themselves. Its ratio is the CPU-time speed-up.

    PYTHONPATH=. python bench/grpo_scaling.py                    # tiny, G=8, 32 prompts, 128 new tokens
    PYTHONPATH=. python bench/grpo_scaling.py --new-tokens 32    # the earlier default
    PYTHONPATH=. python bench/grpo_scaling.py --steps 4 --prompts 8

The script is also the torchrun worker (`--worker RUN_DIR`), so the reward can be a Python function.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from bench.grpo import build_model_dir, device_name, digit_share

INFORMATIVE = 0.25  # share of problems whose groups get reward variance (the rest train nothing)
UPDATE_CPU: list[tuple[float, float]] = []  # this process's CPU time at the start and end of each update


def sparse_digit_share(prompts: list[str], completions: list[str], problem: list, **_: object) -> list[float]:
    """digit_share on a fixed `INFORMATIVE` share of the problems (by a hash), 0 on the others."""
    shares = digit_share(prompts, completions)
    return [s if zlib.crc32(p.canonical.encode()) % 1000 < 1000 * INFORMATIVE else 0.0
            for s, p in zip(shares, problem, strict=True)]  # fmt: skip


ROOT = Path(__file__).resolve().parents[1]


def time_updates() -> None:
    """Record this process's CPU time around every GRPO update (wrapping the trainer's method): the
    training phase of a step; the time between two updates is its rollout phase."""
    from tinyseek.rl.grpo_trainer import GRPOTrainer

    update = GRPOTrainer.update

    def timed_update(self: GRPOTrainer, groups: list[Any]) -> tuple[dict[str, float], bool]:
        start = time.process_time()
        try:
            return update(self, groups)
        finally:
            UPDATE_CPU.append((start, time.process_time()))

    GRPOTrainer.update = timed_update  # type: ignore[method-assign]


def worker(args: argparse.Namespace) -> None:
    """One GRPO run (every rank runs this under torchrun); rank 0 writes metrics.jsonl."""
    import torch

    from tinyseek.rl import GRPOConfig, GRPORunConfig, run_grpo
    from tinyseek.rl.rewards import RewardFunction

    torch.set_num_threads(1)
    time_updates()
    config = GRPORunConfig(
        model=args.model_dir,
        run_dir=args.worker,
        task="addition",
        grpo=GRPOConfig(
            group_size=args.group_size,
            prompts_per_step=args.prompts,
            max_new_tokens=args.new_tokens,
            lr=1e-5,
            beta=0.0,
        ),  # fmt: skip
        reward_weights={},
        extra_rewards=[RewardFunction("digits", sparse_digit_share)],
        max_steps=args.steps,
        seed=1,
        eval_every=0,
        save_every=0,
        tensorboard=False,
        progress=False,
    )
    run_grpo(config)
    rank = os.environ.get("RANK", "0")
    (Path(args.worker) / f"cpu-rank{rank}.json").write_text(json.dumps(UPDATE_CPU))


def timed(world: int, model_dir: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Launch one run with `world` ranks; the median step seconds after the warm-up and what it sampled."""
    load = os.getloadavg()[0]
    flags = [str(Path(__file__).resolve()), "--worker", str(run_dir), "--model-dir", str(model_dir),
             "--steps", str(args.steps), "--prompts", str(args.prompts), "--group-size", str(args.group_size),
             "--new-tokens", str(args.new_tokens)]  # fmt: skip
    launcher = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    "--standalone", f"--nproc-per-node={world}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([*launcher, *flags], env=env, check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rollout_cpu, train_cpu = [], []  # per rank: median CPU seconds per step after the warm-up
    for rank in range(world):
        marks = json.loads((run_dir / f"cpu-rank{rank}.json").read_text())
        rollout_cpu.append(
            statistics.median(start - end for (_, end), (start, _) in zip(marks[:-1], marks[1:], strict=True))
        )
        train_cpu.append(statistics.median(end - start for start, end in marks[1:]))
    steps = [r for r in records if "step_seconds" in r]
    timed_steps = steps[1:]  # the first step pays for warm-up
    return {
        "ranks": world,
        "step_seconds": statistics.median(r["step_seconds"] for r in timed_steps),
        "rollout_seconds": statistics.median(r["rollout_seconds"] for r in timed_steps),
        "train_seconds": statistics.median(r["train_seconds"] for r in timed_steps),
        "completion_length": statistics.fmean(r["completion_length/mean"] for r in steps),
        "trained_sequences": statistics.fmean(r["trained_sequences"] for r in steps),
        "load_average_1min": load,
        "cpu_rollout_seconds": rollout_cpu,
        "cpu_train_seconds": train_cpu,
        "cpu_seconds_busiest_rank": max(rollout_cpu) + max(train_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=5, help="GRPO steps per run (the first is a warm-up)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128, help="32: the earlier default (see above)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.preset)
        results = [timed(world, model_dir, Path(tmp) / f"run{world}", args) for world in (1, 2)]
    one, two = results
    print(f"device: {device_name()}, one thread per rank, gloo; {os.cpu_count()} CPUs")
    print(f"{args.preset}, G={args.group_size}, {args.prompts} prompts/step, {args.new_tokens} new tokens, "
          f"median of {args.steps - 1} steps after a warm-up")  # fmt: skip
    for r in results:
        print(f"  {r['ranks']} rank(s): {r['step_seconds']:.3f} s/step (rollout {r['rollout_seconds']:.3f} s, "
              f"train {r['train_seconds']:.3f} s), mean completion {r['completion_length']:.1f} tokens, "
              f"{r['trained_sequences']:.0f} sequences trained/step, "
              f"load average {r['load_average_1min']:.2f}")  # fmt: skip
        print(f"    CPU s/step per rank: rollout {' '.join(f'{v:.3f}' for v in r['cpu_rollout_seconds'])}, "
              f"train {' '.join(f'{v:.3f}' for v in r['cpu_train_seconds'])}; "
              f"busiest rank {r['cpu_seconds_busiest_rank']:.3f} (phase by phase)")  # fmt: skip
    cpu = {
        phase: one[f"cpu_{phase}_seconds"][0] / max(two[f"cpu_{phase}_seconds"])
        for phase in ("rollout", "train")
    }
    print(
        f"speed-up at 2 ranks: x{one['step_seconds'] / two['step_seconds']:.2f} wall-clock, "
        f"x{one['cpu_seconds_busiest_rank'] / two['cpu_seconds_busiest_rank']:.2f} in CPU time of the busiest rank "
        f"(rollout x{cpu['rollout']:.2f}, train x{cpu['train']:.2f})"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
