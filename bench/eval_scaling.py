"""Evaluation throughput against its size: 500 problems per family must run near the tokens/s of 100.

A bigger evaluation keeps the batch full longer, so its completions end at scattered times and new
ones join beside old ones: the decode batch mixes short and long contexts. Padding every row to the
longest context would make the big run slower per token than the small one; the engine's length
buckets (prefill) and ragged attention (decode) are what keep them equal.

Runs `tinyseek.eval.evaluate` on a random-weight `tiny` model (its completions are noise, but their
lengths scatter as real ones do: each ends at EOS or the token limit) for `--small` then `--large`
problems per family, then `--small` again; prints generated tokens/s of each and the ratio of the
large run to the mean of the two small ones (one process, one thread if asked), both per second of
wall time and per second of this process's CPU time: on a shared machine the wall time swings with
the neighbours' load (±30% between two identical runs), the CPU time much less.

    PYTHONPATH=. python bench/eval_scaling.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from eval_batching import build_model, device_name

from tinyseek import LLM
from tinyseek.eval import evaluate, problem_sets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["addition", "multiplication"])
    parser.add_argument("--small", type=int, default=100, help="problems per family, small run")
    parser.add_argument("--large", type=int, default=500, help="problems per family, large run")
    parser.add_argument("-k", type=int, default=4, help="samples per problem")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per completion")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        llm = LLM(build_model(Path(tmp), args.tasks[0]))
        evaluate(llm, problem_sets(args.tasks, n=2, seed=99), k=2, max_tokens=4, template="r1zero")  # warm-up
        for n in (args.small, args.large, args.small):
            sets = problem_sets(args.tasks, n=n)
            start, cpu_start = time.perf_counter(), time.process_time()
            report = evaluate(llm, sets, k=args.k, max_tokens=args.max_tokens, template="r1zero")
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            tokens = report.generated_tokens
            runs.append({"problems_per_family": n, "generated_tokens": tokens,
                         "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
                         "tokens_per_s": round(tokens / seconds, 1),
                         "tokens_per_cpu_s": round(tokens / cpu_seconds, 1)})  # fmt: skip
            if not args.json:
                print(f"{n:4d} problems per family: {tokens} tokens in {seconds:.1f} s ({cpu_seconds:.1f} s of CPU) = "
                      f"{runs[-1]['tokens_per_s']:.0f} tok/s, {runs[-1]['tokens_per_cpu_s']:.0f} tok per CPU-s",
                      flush=True)  # fmt: skip
    small = (runs[0]["tokens_per_s"] + runs[2]["tokens_per_s"]) / 2
    small_cpu = (runs[0]["tokens_per_cpu_s"] + runs[2]["tokens_per_cpu_s"]) / 2
    result = {
        "device": device_name("cpu"),
        "load_average_at_start": os.getloadavg()[0],
        "tasks": args.tasks,
        "k": args.k,
        "max_tokens": args.max_tokens,
        "runs": runs,
        "large_over_small_tokens_per_s": round(runs[1]["tokens_per_s"] / small, 3),
        "large_over_small_tokens_per_cpu_s": round(runs[1]["tokens_per_cpu_s"] / small_cpu, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.large} vs {args.small} per family: {result['large_over_small_tokens_per_s']:.0%} of the "
              f"tokens/s, {result['large_over_small_tokens_per_cpu_s']:.0%} of the tokens per CPU-second "
              f"({result['device']})")  # fmt: skip


if __name__ == "__main__":
    main()
