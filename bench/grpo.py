"""Seconds per GRPO step: tinyseek's loop against TRL's GRPOTrainer, same model, tokenizer, task and sizes.

Builds a random-weight model from a preset (default `tiny`, MTP off) with a byte-level BPE trained on
R1-Zero-templated addition problems, saves it in the HF layout, and runs GRPO steps on it with both:
G completions for each of P prompts per step, the same max completion length, temperature 1, β = 0,
one inner iteration, fp32 (or bf16 autocast with --bf16), AdamW. The reward is the share of digits in the completion, so groups
have reward variance and neither side can skip the backward pass of flat groups. The first step of
each is a warm-up; the median of the others is reported, with the mean completion length of each
(random weights rarely emit the end of sequence, so both mostly generate the full length). tinyseek's
steps run half before and half after TRL's, so a drifting load on a shared CPU weighs on both alike.

    PYTHONPATH=. python bench/grpo.py                         # tiny, G=8, 32 prompts, 32 new tokens
    PYTHONPATH=. python bench/grpo.py --steps 3 --prompts 8 --new-tokens 16 --skip-trl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tinyseek.chat_template import r1_zero_prompt
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer
from tinyseek.rl.config import GRPOConfig
from tinyseek.rl.grpo_trainer import GRPOTrainer
from tinyseek.rl.prompts import PromptSource, parse_tasks
from tinyseek.rl.rewards import RewardFunction, RewardSet
from tinyseek.tasks import get_task
from tinyseek.tokenizer import Tokenizer


def device_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def digit_share(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """Share of digits in each completion (TRL passes strings for plain-text prompts, as tinyseek does)."""
    texts = [c if isinstance(c, str) else str(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]


def build_model_dir(directory: Path, preset: str, seed: int = 0) -> Path:
    task = get_task("addition")
    corpus = [
        r1_zero_prompt(task.prompt(p)) + task.solution(p)
        for p, _ in zip(task.sample(seed=0), range(200), strict=False)
    ]
    tokenizer = Tokenizer.train(corpus, vocab_size=256, full_byte_alphabet=False)
    tokenizer.save_pretrained(directory)
    config = ModelConfig.preset(
        preset,
        vocab_size=tokenizer.vocab_size,
        num_nextn_predict_layers=0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    Transformer(config).save_pretrained(directory)
    return directory


def questions(n: int) -> list[str]:
    task = get_task("addition")
    return [r1_zero_prompt(task.prompt(p)) for p, _ in zip(task.sample(seed=1), range(n), strict=False)]


class TinyseekSide:
    """tinyseek's GRPOTrainer on the model directory; `run(n)` times n more steps (the first is a warm-up)."""

    def __init__(self, model_dir: Path, args: argparse.Namespace) -> None:
        tokenizer = Tokenizer.from_pretrained(model_dir)
        model = Transformer.from_pretrained(model_dir)
        config = GRPOConfig(
            group_size=args.group_size,
            prompts_per_step=args.prompts,
            max_new_tokens=args.new_tokens,
            lr=1e-5,
            beta=0.0,
            mu=1,
        )
        prompts = PromptSource(parse_tasks("addition"), tokenizer, "r1zero", seed=1)
        rewards = RewardSet([RewardFunction("digits", digit_share)])
        amp = torch.bfloat16 if args.bf16 else None
        self.trainer = GRPOTrainer(model, tokenizer, config, rewards, prompts, amp_dtype=amp)
        self.seconds: list[float] = []
        self.lengths: list[float] = []
        self.rollout: list[float] = []

    def run(self, steps: int) -> None:
        for _ in range(steps):
            start = time.perf_counter()
            result = self.trainer.train_step()
            self.seconds.append(time.perf_counter() - start)
            self.lengths.append(result.metrics["completion_length/mean"])
            self.rollout.append(result.metrics["rollout_seconds"])

    def report(self) -> dict[str, float]:
        timed = self.seconds[1:]
        return {
            "seconds_per_step": statistics.median(timed),
            "rollout_share": statistics.median(r / s for r, s in zip(self.rollout[1:], timed, strict=True)),
            "completion_length": statistics.mean(self.lengths[1:]),
            "steps_timed": len(timed),
        }


def bench_trl(model_dir: Path, args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    marks: list[float] = []
    lengths: list[float] = []

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

        def on_log(self, *a: Any, logs: dict[str, float] | None = None, **k: Any) -> None:
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dataset = Dataset.from_list([{"prompt": q} for q in questions(args.prompts * (args.steps + 1))])
    config = TRLConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=args.group_size * args.prompts,
        num_generations=args.group_size,
        max_completion_length=args.new_tokens,
        temperature=1.0,
        learning_rate=1e-5,
        beta=0.0,
        num_iterations=1,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=args.bf16,
        dataloader_num_workers=0,
        shuffle_dataset=False,
        gradient_checkpointing=False,  # TRL turns it on by default; tinyseek does not recompute
    )
    trainer = TRLTrainer(
        model=model,
        reward_funcs=[digit_share],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.add_callback(StepTimer())
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; keep stdout for the report
        trainer.train()
    edges = [start, *marks]
    seconds = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    return {
        "seconds_per_step": statistics.median(seconds[1:]),
        "completion_length": statistics.mean(lengths[1:]) if len(lengths) > 1 else float("nan"),
        "steps_timed": len(seconds) - 1,
    }


def reference_versions() -> dict[str, str]:
    """The versions a ratio depends on (pinned in pyproject's dev and bench extras)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "trl"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="model preset (random weights; default tiny)")
    parser.add_argument("--group-size", "-G", type=int, default=8, help="completions per prompt (default 8)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts per step (default 32)")
    parser.add_argument("--new-tokens", type=int, default=32, help="max completion tokens (default 32)")
    parser.add_argument(
        "--steps", type=int, default=3, help="steps per side, the first a warm-up (default 3)"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast for training on both sides (fp32 master weights)"
    )
    parser.add_argument("--skip-trl", action="store_true", help="time tinyseek only")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is a warm-up)")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp) / "model", args.preset)
        report: dict[str, Any] = {
            "device": device_name(),
            "preset": args.preset,
            "group_size": args.group_size,
            "prompts_per_step": args.prompts,
            "max_new_tokens": args.new_tokens,
            "versions": reference_versions(),
        }
        ours = TinyseekSide(model_dir, args)
        # Half of tinyseek's steps before TRL's and half after, so a load that drifts (shared CPU)
        # weighs on both sides alike.
        ours.run(1 + (args.steps - 1) // 2)
        if not args.skip_trl:
            report["trl"] = bench_trl(model_dir, args, Path(tmp) / "trl")
        ours.run(args.steps - 1 - (args.steps - 1) // 2)
        report["tinyseek"] = ours.report()
        if "trl" in report:
            report["speedup"] = report["trl"]["seconds_per_step"] / report["tinyseek"]["seconds_per_step"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"device: {report['device']}; preset {args.preset}, G={args.group_size}, {args.prompts} prompts/step, "
          f"{args.new_tokens} new tokens, beta=0, {'bf16 autocast' if args.bf16 else 'fp32'}")  # fmt: skip
    for side in ("tinyseek", "trl"):
        if side in report:
            r = report[side]
            print(
                f"{side:>9}: {r['seconds_per_step']:.2f} s/step (completion length {r['completion_length']:.1f})"
            )
    if "speedup" in report:
        print(f"tinyseek is {report['speedup']:.2f}x faster per step (target >= 3x)")


if __name__ == "__main__":
    main()
