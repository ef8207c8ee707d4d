"""`tinyseek eval` (R1-style metrics of a model on task families or a benchmark file) and
`tinyseek rejection-sample` (keep the verified-correct, well-formed samples as SFT data).

Both are thin over `tinyseek.eval`: the problems come from `problem_sets` / `data_source`, the sampling
and scoring from `evaluate`, the filter from `select_traces`. Arguments are checked before the model is
loaded, so a typo costs no loading time. Under `torchrun --nproc-per-node N -m tinyseek eval ...` (and
`rejection-sample`) the problems are split over the ranks (`evaluate_sharded`) and rank 0 writes the one
merged report or JSONL, identical to one process's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tinyseek.commands.eval_endpoint import add_endpoint_args, check_mode_flags, endpoint_report

EVAL = (
    "Evaluate a model the way DeepSeek-R1 reports it: k samples per problem at temperature 0.6 / top-p "
    "0.95, pass@1 averaged over them, unbiased pass@k, cons@k (majority vote), format compliance and "
    "reasoning length, per task family. With --model all requests go to the engine in one batch; with "
    "--base-url they go to any OpenAI-compatible endpoint (tinyseek serve, vLLM, SGLang, Ollama, a hosted "
    "API), with retries, resumable results and the token usage and cost."
)


def _common_args(p: argparse.ArgumentParser, split: str, k: int) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="model directory (config.json, *.safetensors, tokenizer.json); eval takes --base-url instead",
    )
    p.add_argument(
        "--task",
        default=None,
        help="task families, comma-separated (see `tinyseek tasks list`), or gsm8k:FILE / math:FILE",
    )
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FILE.jsonl",
        help="a benchmark JSONL file, style detected from its fields (repeatable; combines with --task)",
    )
    p.add_argument(
        "--data-style",
        choices=("gsm8k", "math"),
        default=None,
        help="style of --data files (default: detect)",
    )
    p.add_argument("-k", type=int, default=k, help=f"samples per problem (default {k})")
    p.add_argument(
        "--n", type=int, default=None, help="problems per task (default: 500 per family, whole files)"
    )
    p.add_argument(
        "--split",
        choices=("train", "validation", "test", "all"),
        default=split,
        help=f"split of the problems (default {split}); a benchmark file is split by the same hash as "
        "training uses, 'all' scores a file whole (its train part included)",
    )
    p.add_argument("--difficulty", type=int, default=1, help="difficulty of procedural tasks (default 1)")
    p.add_argument(
        "--lang", default="en", help="prompt language of procedural tasks: en, fr, zh (default en)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and of the samples (default 0)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6, R1's)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95, R1's)")
    p.add_argument("--max-tokens", type=int, default=512, help="most tokens per completion (default 512)")
    p.add_argument(
        "--template",
        choices=("r1zero", "chat"),
        default=None,
        help="prompt template: r1zero (plain text, for base models) or chat (R1's); default chat when "
        "the tokenizer has a chat template, else r1zero",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "auto"),
        default="float32",
        help="weights and cache dtype (auto: the faster on this machine, timed)",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--max-num-seqs", type=int, default=256, help="sequences decoded together (default 256)")
    p.add_argument(
        "--compile", action="store_true", help="compile the engine's decode forward (faster after 15-40 s)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    summary = "pass@1 over k samples, pass@k, cons@k, format rate, reasoning length of a model"
    e = sub.add_parser("eval", help=summary, description=EVAL)
    _common_args(e, split="test", k=8)
    e.add_argument("--greedy", action="store_true", help="also one temperature-0 sample per problem")
    e.add_argument("--out", default=None, help="write the JSON report with every problem's samples here")
    add_endpoint_args(e)
    e.set_defaults(func=run_eval)

    r = sub.add_parser(
        "rejection-sample",
        help="sample k traces per prompt, keep the correct and well-formed ones as SFT data",
        description="Rejection sampling (R1 stage 3): k samples per prompt; the ones the task verifies "
        "correct and that follow the template's format are kept (identical ones once, at most "
        "--max-per-prompt) and written as JSONL {prompt, completion, task, answer, ...}.",
    )
    _common_args(r, split="train", k=8)
    r.add_argument("--max-per-prompt", type=int, default=None, help="keep at most M traces per prompt")
    r.add_argument("--out", required=True, help="output JSONL file (written atomically)")
    r.set_defaults(func=run_rejection_sample)


def _check(args: argparse.Namespace) -> None:
    """Cheap checks of the numbers, so a bad flag fails before the model loads."""
    from tinyseek import SamplingParams

    if not hasattr(args, "base_url") and args.model is None:
        raise ValueError("give --model DIR")
    if hasattr(args, "base_url") and (args.model is None) == (args.base_url is None):
        raise ValueError(
            "give either --model DIR (evaluate in process) or --base-url URL (an OpenAI-compatible "
            f"endpoint){', not both' if args.model else ''}"
        )
    if hasattr(args, "base_url"):
        check_mode_flags(args)
    if args.k < 1:
        raise ValueError(f"-k {args.k}: expected at least 1 sample per problem")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n {args.n}: expected at least 1 problem per task")
    if getattr(args, "max_per_prompt", None) is not None and args.max_per_prompt < 1:
        raise ValueError(f"--max-per-prompt {args.max_per_prompt}: expected at least 1")
    SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, n=args.k)


def _sets(args: argparse.Namespace) -> list[Any]:
    from tinyseek.eval.problems import data_source, problem_sets

    names = [t.strip() for t in (args.task or "").split(",") if t.strip()]
    if not names and not args.data:
        raise ValueError("give --task NAME[,NAME] and/or --data FILE.jsonl")
    tasks: list[Any] = [*names, *(data_source(path, args.data_style) for path in args.data)]
    return problem_sets(tasks, args.n, args.seed, args.difficulty, args.split, args.lang)


def _report(args: argparse.Namespace, greedy: bool) -> tuple[Any, bool]:
    """The in-process report and whether this process writes it: under torchrun every rank evaluates
    its block of the problems (tinyseek.eval.sharded) and rank 0 writes the merged report."""
    import torch

    from tinyseek import LLM
    from tinyseek.eval.sharded import evaluate_sharded
    from tinyseek.train.parallel_run import ParallelRun

    _check(args)
    sets = _sets(args)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": "auto"}[args.dtype]
    run = ParallelRun.start(torch.device(args.device), ep=1)
    try:
        llm = LLM(
            args.model, dtype=dtype, device=run.device, max_num_seqs=args.max_num_seqs, compile=args.compile
        )
        report = evaluate_sharded(
            llm, sets, k=args.k, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
            template=args.template, seed=args.seed, greedy=greedy,
        )  # fmt: skip
        return report, run.is_main
    finally:
        run.close()


def run_eval(args: argparse.Namespace) -> int:
    from tinyseek.checkpoint.run import write_text_atomically

    _check(args)
    if args.base_url:
        from tinyseek.eval.endpoint_client import EndpointError

        try:
            report = endpoint_report(args, _sets(args))
        except EndpointError as err:  # the endpoint gave up on us: say so, and how to go on
            print(f"tinyseek eval: error: {err}\nfinished samples are kept; rerun to resume", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("tinyseek eval: interrupted; finished samples are kept, rerun to resume", file=sys.stderr)
            return 130
    else:
        report, main = _report(args, greedy=args.greedy)
        if not main:
            return 0
    if args.out:
        write_text_atomically(
            args.out, json.dumps(report.to_json(include_records=True), ensure_ascii=False) + "\n"
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.markdown())
        if args.out:
            print(f"report with per-problem samples written to {args.out}", file=sys.stderr)
        if args.base_url:
            print(f"samples in {report.settings['results']} (rerun to resume)", file=sys.stderr)
    return 0


def run_rejection_sample(args: argparse.Namespace) -> int:
    from tinyseek.eval.rejection import select_traces, write_traces

    report, main = _report(args, greedy=False)
    if not main:
        return 0
    traces, summary = select_traces(report, args.max_per_prompt)
    write_traces(args.out, traces)
    if args.json:
        print(json.dumps({"out": args.out, **summary.to_json(), "eval": report.to_json()}, indent=2))
    else:
        print(
            f"kept {summary.samples_kept} traces of {summary.samples} samples "
            f"({summary.prompts_kept}/{summary.prompts} prompts; {summary.accepted} correct and well formed, "
            f"{summary.duplicates} duplicates dropped) -> {args.out}"
        )
    return 0
