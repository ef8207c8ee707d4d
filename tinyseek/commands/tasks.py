"""`tinyseek tasks list|sample`: look at the verifiable task families and their worked solutions."""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("tasks", help="list task families, print sample problems with solutions")
    sub = parser.add_subparsers(dest="tasks_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", help="list the procedural task families")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(func=list_tasks)

    sample = sub.add_parser("sample", help="print problems with their worked solutions")
    sample.add_argument("task", help="a task name from `tinyseek tasks list`, or gsm8k:FILE / math:FILE")
    sample.add_argument("-n", type=int, default=5, help="how many problems (default 5)")
    sample.add_argument("--lang", default="en", help="language of prompt and solution: en, fr, zh")
    sample.add_argument(
        "--split", choices=("train", "validation", "test"), default="train", help="which split"
    )
    sample.add_argument("--seed", type=int, default=0, help="seed of the problem stream")
    add_trace_knobs(sample)
    sample.add_argument("--json", action="store_true", help="print one JSON object per line")
    sample.set_defaults(func=sample_tasks)


def add_trace_knobs(parser: Any) -> None:
    """How the worked solutions read: the knobs `tasks sample` and the trainers' task data share (0-1
    rates: each error-prone step slips, a trace checks its answer, a document answers without reasoning)."""
    parser.add_argument("--difficulty", type=int, default=1, help="task difficulty 1..8 (1: the easiest)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="chance that an error-prone step slips")
    parser.add_argument("--self-check-rate", type=float, default=0.0, help="chance a trace checks its answer")
    parser.add_argument("--direct-rate", type=float, default=0.0, help="chance a document answers directly")


def list_tasks(args: argparse.Namespace) -> int:
    from tinyseek.tasks import TASKS

    rows = [
        {"name": name, "description": (cls.__doc__ or "").strip().splitlines()[0]}
        for name, cls in TASKS.items()
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            print(f"{row['name']:<16}{row['description']}")
        print("gsm8k:FILE      a GSM8K-style JSONL file (question, answer ending '#### n')")
        print("math:FILE       a MATH-style JSONL file (problem, solution with \\boxed{})")
    return 0


def sample_tasks(args: argparse.Namespace) -> int:
    import random

    from tinyseek.tasks import ReasoningTask, get_task

    if args.n < 1:
        raise ValueError(f"-n must be at least 1, got {args.n}")
    task = get_task(args.task)
    rng = random.Random(args.seed)
    stream = task.sample(args.seed, args.difficulty, args.split)
    for index, problem in enumerate(itertools.islice(stream, args.n)):
        if isinstance(task, ReasoningTask):
            trace = task.trace(
                problem, args.lang, args.error_rate, args.self_check_rate, rng, direct_rate=args.direct_rate
            )
            solution, extra = trace.text(), {"correct": trace.correct, "self_checked": trace.self_checked}
        else:
            solution, extra = task.solution(problem, args.lang), {}
        row = {
            "task": task.name,
            "canonical": problem.canonical,
            "prompt": task.prompt(problem, args.lang),
            "solution": solution,
            "answer": problem.answer,
            **extra,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"### {index + 1}. {row['prompt']}\n{solution}\n")
    return 0
