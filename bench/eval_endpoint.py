"""Endpoint evaluation against in-process evaluation: same samples, and what HTTP and failures cost.

Runs `evaluate` on a model directory in process, then `evaluate_endpoint` against the same model behind
tinyseek's server (uvicorn, loopback): directly, through a proxy that injects 429s, 500s (some after
the server did the work) and stalls past the client's timeout, and as a run cut short by a permanent
error then resumed from its results file. Every run must give the in-process samples exactly; prints
seconds, requests and retries of each, and the usage/cost of the direct run.

    PYTHONPATH=. python bench/eval_endpoint.py                      # Markov test model, gcd + addition
    PYTHONPATH=. python bench/eval_endpoint.py --model DIR --tasks addition --n 200 -k 8 --json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.endpoint_proxy import FlakyProxy
from tests.fixtures import markov_model_dir
from tests.serve_harness import RunningServer
from tinyseek.eval.endpoint import evaluate_endpoint
from tinyseek.eval.endpoint_client import EndpointClient, EndpointError
from tinyseek.eval.problems import problem_sets
from tinyseek.eval.runner import EvalReport, evaluate
from tinyseek.inference.llm import LLM
from tinyseek.serve.state import ServerSettings
from tinyseek.tokenizer import Tokenizer

NAME = "bench-model"


def _same(a: EvalReport, b: EvalReport) -> bool:
    pairs = zip(a.records, b.records, strict=True)
    return all(x.samples == y.samples and x.greedy == y.greedy for x, y in pairs) and a.overall == b.overall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model directory (default: the Markov test model)")
    parser.add_argument("--tasks", default="gcd,addition")
    parser.add_argument("--n", type=int, default=100, help="problems per task")
    parser.add_argument("-k", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fail-rate", type=float, default=0.2, help="share of POSTs the proxy breaks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tinyseek-eval-endpoint-"))
    model_dir = Path(args.model) if args.model else markov_model_dir(work / "markov")
    sets = problem_sets(args.tasks.split(","), n=args.n, seed=0)
    sampling: dict[str, Any] = {"k": args.k, "max_tokens": args.max_tokens, "seed": 0, "greedy": True}
    rows: dict[str, dict[str, Any]] = {}

    start = time.perf_counter()
    reference = evaluate(LLM(model_dir), sets, template="chat", **sampling)
    rows["in process"] = {"seconds": time.perf_counter() - start, "requests": 0}
    tokenizer = Tokenizer.from_pretrained(model_dir)
    server = RunningServer(ServerSettings(model_dir=model_dir, served_model_name=NAME))
    asked = sum(len(s.problems) for s in sets) * (args.k + 1)
    rows["in process"]["requests"] = asked  # one batched generate call

    def run(label: str, base_url: str, results: Path, **client: Any) -> EvalReport:
        with EndpointClient(base_url, NAME, concurrency=args.concurrency, **client) as endpoint:
            begin = time.perf_counter()
            report = evaluate_endpoint(
                endpoint, sets, results, template="chat", concurrency=args.concurrency,
                tokenizer=tokenizer, price_in=0.55, price_out=2.19, **sampling,
            )  # fmt: skip
            assert report.usage is not None
            rows[label] = {
                "seconds": time.perf_counter() - begin,
                "requests": asked - int(report.usage["resumed"]) + int(report.usage["retries"]),
                "retries": int(report.usage["retries"]),
                "identical": _same(report, reference),
            }
        return report

    try:
        direct = run("endpoint", f"{server.base_url}/v1", work / "direct.jsonl")
        chaos = random.Random(0)
        faults = ["429", "429", "500", "late500", "stall"]

        def plan(n: int) -> str:
            return chaos.choice(faults) if chaos.random() < args.fail_rate else "pass"

        flaky = FlakyProxy(server.base_url, plan, stall_seconds=3.0)
        try:
            run("endpoint via faulty proxy", flaky.base_url, work / "flaky.jsonl", timeout=2.0, backoff=0.5)
        finally:
            flaky.stop()
        cut = FlakyProxy(server.base_url, lambda n: "pass" if n < asked // 2 else "401")
        try:
            run("interrupted", cut.base_url, work / "resume.jsonl", max_retries=0)
        except EndpointError:
            pass
        finally:
            cut.stop()
        run("resumed", f"{server.base_url}/v1", work / "resume.jsonl")
    finally:
        server.stop()

    if args.json:
        print(json.dumps({"runs": rows, "overall": direct.overall, "usage": direct.usage}, indent=2))
        return
    print(f"{asked} requests: {args.tasks} x {args.n} problems x (k={args.k} + greedy)\n")
    print("| run | seconds | requests sent | retries | samples identical to in-process |")
    print("|---|---:|---:|---:|---|")
    for label, row in rows.items():
        same = "reference" if label == "in process" else ("yes" if row["identical"] else "NO")
        print(f"| {label} | {row['seconds']:.1f} | {row['requests']} | {row.get('retries', '')} | {same} |")
    print()
    print(direct.markdown())


if __name__ == "__main__":
    main()
