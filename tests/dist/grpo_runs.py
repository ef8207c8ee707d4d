"""torchrun script (2 gloo ranks): `tinyseek grpo`, `eval` and `rejection-sample` across processes.

Launched by tests/test_grpo_distributed.py as
    python -m torch.distributed.run --nproc-per-node=2 tests/dist/grpo_runs.py MODE OUT MODEL ARG...
where ARG... are the grpo flags shared with the one-process references. Every run goes through the
CLI's `main` exactly as `torchrun -m tinyseek grpo ...` would, except where a reward function is the
test's hook (only `run_grpo` takes one), in one launch per MODE (start-up costs seconds on shared cores):

MODE parity:
    OUT/ep1         FSDP2, STEPS steps
    OUT/ep2         FSDP2 + EP(2)
    OUT/beta        FSDP2 + EP(2) with β > 0 (the reference sharded too)
    OUT/dapo        FSDP2, `--preset dapo`: dynamic sampling refills, token-level loss over all ranks
    OUT/term        rank 1 alone gets SIGTERM during step 2: every rank stops after step 2 and saves
    OUT/eval.json   `tinyseek eval --out`, OUT/traces.jsonl `tinyseek rejection-sample`
MODE kill:
    OUT/kill        every rank SIGKILLs itself while sampling step KILL_AFTER + 1 (checkpoints each step)
MODE resume:
    OUT/kill-2      (a copy of OUT/kill) resumed with --resume to STEPS on 2 ranks
    OUT/single-2    (the one-process run cut back to step KILL_AFTER) resumed on 2 ranks

The group is joined here once, so each run reuses it (and leaves it alone at its end).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tinyseek.cli import main as cli_main
from tinyseek.commands.grpo import add_parsers
from tinyseek.parallel import init_distributed
from tinyseek.rl.rewards import RewardFunction, parse_reward_weights
from tinyseek.rl.run import GRPORunConfig, run_grpo

STEPS = 4
KILL_AFTER = 2
EVAL = ["--task", "addition", "-k", "3", "--n", "5", "--max-tokens", "12", "--seed", "1"]


def cli(*args: str) -> None:
    code = cli_main(list(args))
    if code != 0:
        raise SystemExit(f"rank {dist.get_rank()}: tinyseek {' '.join(args)} exited {code}")


def config_from(shared: list[str], run_dir: Path, extra: RewardFunction) -> GRPORunConfig:
    """The GRPORunConfig the CLI builds from `shared`, plus one reward (the test's hook)."""
    import argparse

    from tinyseek.commands.grpo import _RUN_FLAGS, grpo_config

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(["grpo", *shared, "--run-dir", str(run_dir)])
    return GRPORunConfig(
        grpo=grpo_config(args),
        reward_weights=parse_reward_weights(args.rewards),
        extra_rewards=[extra],
        tensorboard=False,
        progress=False,
        **{name: getattr(args, name) for name in _RUN_FLAGS},
    )


def on_call(number: int, action: Any) -> RewardFunction:
    """A weight-0 reward (the totals stay the same) that calls `action()` at its `number`-th call,
    i.e. while step `number` is being sampled (one sampling round per step)."""
    calls = [0]

    def hook(prompts: list[str], completions: list[str], **_: object) -> list[float | None]:
        calls[0] += 1
        if calls[0] == number:
            action()
        return [None] * len(completions)

    return RewardFunction("hook", hook, 0.0)


def main(mode: str, out: Path, model: str, shared: list[str]) -> None:
    torch.set_num_threads(1)
    init_distributed("cpu")
    rank = dist.get_rank()
    grpo = ["grpo", "--model", model, *shared]
    if mode == "parity":
        cli(*grpo, "--run-dir", str(out / "ep1"))
        cli(*grpo, "--run-dir", str(out / "ep2"), "--ep", "2")
        cli(*grpo, "--run-dir", str(out / "beta"), "--ep", "2", "--beta", "0.1")
        cli(*grpo, "--run-dir", str(out / "dapo"), "--preset", "dapo")

        def term() -> None:
            if rank == 1:
                os.kill(os.getpid(), signal.SIGTERM)

        result = run_grpo(
            config_from(["--model", model, *shared, "--max-steps", "50"], out / "term", on_call(2, term))
        )
        (out / f"term-rank{rank}.json").write_text(
            json.dumps({"steps": result.steps, "stopped": result.stopped})
        )
        cli("eval", "--model", model, *EVAL, "--greedy", "--out", str(out / "eval.json"))
        cli("rejection-sample", "--model", model, *EVAL, "--out", str(out / "traces.jsonl"))
    elif mode == "kill":
        config = config_from(["--model", model, *shared, "--save-every", "1"], out / "kill",
                             on_call(KILL_AFTER + 1, lambda: os.kill(os.getpid(), signal.SIGKILL)))  # fmt: skip
        run_grpo(config)
        raise SystemExit("the run was meant to be killed")
    elif mode == "resume":
        cli(*grpo, "--run-dir", str(out / "kill-2"), "--resume")
        cli(*grpo, "--run-dir", str(out / "single-2"), "--resume")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:])
