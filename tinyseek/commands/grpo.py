"""`tinyseek grpo`: reinforcement learning with verifiable rewards (GRPO, Dr. GRPO, DAPO) on a model directory.

GRPO (or Dr. GRPO / DAPO) on procedurally generated tasks or a JSONL benchmark. Writes metrics.jsonl +
TensorBoard, evaluation samples, resumable checkpoints and RUN_DIR/final (an HF model directory for
`tinyseek serve`). Under `torchrun --nproc-per-node N -m tinyseek grpo ...` (same flags) the rollouts are
split over the ranks and the policy is trained sharded (FSDP2, `--ep` expert parallelism); rank 0
prints. `--preset` picks a GRPOConfig preset and every objective flag given on the command
line overrides it (flags left out keep the preset's value); a thin layer over `tinyseek.rl.run.run_grpo`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# Flags named as the GRPOConfig field they set (None = keep the preset's value).
_GRPO_FLAGS = (
    "group_size", "prompts_per_step", "lr", "beta", "mu", "epsilon_high", "loss_type", "max_new_tokens",
    "temperature", "top_p", "weight_decay", "max_grad_norm", "overlong_cache", "max_sampling_rounds",
)  # fmt: skip
# Flags named as the GRPORunConfig field they set.
_RUN_FLAGS = (
    "model", "run_dir", "task", "eval_task", "template", "max_steps", "max_minutes", "seed", "difficulty",
    "lang", "bf16", "device", "micro_batch_tokens", "warmup_steps", "eval_every", "eval_problems",
    "save_every", "keep_checkpoints", "resume", "ep", "log_rollouts",
)  # fmt: skip


# Spelled out rather than imported so `tinyseek --help` does not import torch; GRPOConfig validates them.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
TEMPLATES = ("r1zero", "chat")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grpo", help="train a model directory with GRPO on verifiable tasks", description=__doc__
    )
    p.add_argument("--model", required=True, help="HF model directory with its tokenizer (tokenizer.json)")
    p.add_argument(
        "--run-dir", required=True, help="output directory (metrics, samples, checkpoints, final/)"
    )
    p.add_argument(
        "--task",
        default="addition",
        help="training tasks, comma-separated (addition,countdown) or gsm8k:PATH",
    )
    p.add_argument(
        "--eval-task", default=None, help="held-out tasks or file (default: the test split of --task)"
    )
    p.add_argument(
        "--template", choices=TEMPLATES, default="r1zero", help="r1zero (base models) or chat (R1 template)"
    )
    p.add_argument("--preset", choices=LOSS_TYPES, default="grpo", help="objective preset")
    p.add_argument("--group-size", "-G", type=int, default=None, help="completions per prompt (G)")
    p.add_argument("--prompts-per-step", type=int, default=None, help="prompts per optimisation step")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    p.add_argument("--beta", type=float, default=None, help="k3 KL coefficient (0 = no reference model)")
    p.add_argument("--mu", type=int, default=None, help="inner iterations per batch (mu)")
    p.add_argument("--epsilon", type=float, default=None, help="clip range: sets both epsilon_low and _high")
    p.add_argument("--epsilon-high", type=float, default=None, help="upper clip range (DAPO clip-higher)")
    p.add_argument("--loss-type", choices=LOSS_TYPES, default=None, help="aggregation: grpo, dr_grpo or dapo")
    p.add_argument("--max-new-tokens", type=int, default=None, help="completion length limit")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature of rollouts")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass of rollouts")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay")
    p.add_argument("--max-grad-norm", type=float, default=None, help="gradient clipping norm")
    p.add_argument("--overlong-cache", type=int, default=None, help="DAPO overlong shaping window (0 = off)")
    p.add_argument("--max-sampling-rounds", type=int, default=None, help="dynamic sampling refill rounds")
    p.add_argument(
        "--dynamic-sampling", action="store_true", help="drop zero-variance groups and refill (DAPO)"
    )
    p.add_argument("--mask-truncated", action="store_true", help="leave completions cut at the limit out")
    p.add_argument(
        "--rewards",
        default="accuracy=1,format=0.5",
        help="reward weights, e.g. accuracy=1,format=0.5,language=0.1",
    )
    p.add_argument("--max-steps", type=int, default=100, help="GRPO steps to train (default 100)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--seed", type=int, default=0, help="seed of prompts and sampling")
    p.add_argument("--difficulty", type=int, default=1, help="difficulty of procedural tasks")
    p.add_argument(
        "--lang",
        default="en",
        help="prompt language of procedural tasks (en, fr, zh), or several taking turns (en,fr,zh)",
    )
    p.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast for training, fp32 master weights (faster only with native bf16: GPUs, AVX512-BF16/AMX CPUs)",
    )
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--micro-batch-tokens", type=int, default=16384, help="padded tokens per micro-batch")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear LR warmup steps (0 = constant)")
    p.add_argument("--eval-every", type=int, default=25, help="evaluate every N steps (0 = never)")
    p.add_argument("--eval-problems", type=int, default=64, help="held-out problems per evaluation")
    p.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (and at the end)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept (newest)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --run-dir")
    p.add_argument(
        "--ep", type=int, default=1, help="expert-parallel degree under torchrun (divides the world size)"
    )
    p.add_argument(
        "--log-rollouts",
        action="store_true",
        help="write every step's completions to samples/rollouts-step-N.jsonl",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="write metrics.jsonl only")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")
    p.set_defaults(func=run_grpo_command)


def grpo_config(args: argparse.Namespace) -> Any:
    from tinyseek.rl.config import GRPOConfig

    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _GRPO_FLAGS if getattr(args, name) is not None
    }
    if args.epsilon is not None:
        overrides["epsilon_low"] = args.epsilon
        overrides.setdefault("epsilon_high", args.epsilon)
    if args.dynamic_sampling:
        overrides["dynamic_sampling"] = True
    if args.mask_truncated:
        overrides["mask_truncated"] = True
    return GRPOConfig.preset(args.preset, **overrides)


def run_grpo_command(args: argparse.Namespace) -> int:
    from tinyseek.rl.rewards import parse_reward_weights
    from tinyseek.rl.run import GRPORunConfig, run_grpo
    from tinyseek.train.parallel_run import is_main_process

    config = GRPORunConfig(
        grpo=grpo_config(args),
        reward_weights=parse_reward_weights(args.rewards),
        tensorboard=not args.no_tensorboard,
        progress=not args.json,
        **{name: getattr(args, name) for name in _RUN_FLAGS},
    )
    result = run_grpo(config)
    if not is_main_process():
        return 0
    summary = {
        "run_dir": str(result.run_dir),
        "final_model": str(result.final_model),
        "checkpoint": None if result.checkpoint is None else str(result.checkpoint),
        "steps": result.steps,
        "stopped": result.stopped,
        "metrics": result.metrics,
        "eval": result.eval_metrics,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        shown = {k: result.metrics[k] for k in ("reward/total/mean", "accuracy") if k in result.metrics}
        print(f"GRPO {result.stopped} after {result.steps} steps: {shown}")
        for key, value in result.eval_metrics.items():
            print(f"  {key}: {value:.4g}")
        print(f"policy: {result.final_model}")
    return 0
