"""Evaluation throughput: `tinyseek.eval.evaluate` (one batched call) against a per-problem loop.

The reference is what a plain eval script does: one `llm.generate` per problem (its k samples as one
n=k request). Both use the same per-problem seeds, so their completions must agree; the script checks
that and prints seconds, generated tokens/s, the ratio and the device. By default it builds a
random-weight `tiny` preset model with a BPE tokenizer trained on the task corpus (random weights:
the texts are noise, but the lengths and the batching work are real); `--model DIR` uses a real one.

    PYTHONPATH=. python bench/eval_batching.py --threads 1              # tiny preset, CPU
    PYTHONPATH=. python bench/eval_batching.py --n 100 -k 8 --max-tokens 64 --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from tinyseek import LLM, SamplingParams, Transformer
from tinyseek.config import ModelConfig
from tinyseek.eval import evaluate, task_problems
from tinyseek.eval.runner import problem_seed
from tinyseek.tasks import get_task
from tinyseek.tasks.completion import TEMPLATE_STOPS, render_prompt
from tinyseek.tokenizer import Tokenizer


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def build_model(directory: Path, task: str) -> Path:
    source = get_task(task)
    texts = [
        t
        for p in itertools.islice(source.sample(0, 1, "train"), 300)
        for t in (source.prompt(p), source.solution(p))
    ]
    from tinyseek.chat_template import R1_ZERO_TEMPLATE

    tokenizer = Tokenizer.train([R1_ZERO_TEMPLATE, *texts], vocab_size=256, full_byte_alphabet=False)
    config = ModelConfig.preset(
        "tiny",
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Transformer(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model directory (default: a random tiny preset model)")
    parser.add_argument("--task", default="addition", help="task family (default addition)")
    parser.add_argument("--n", type=int, default=32, help="problems (default 32)")
    parser.add_argument("-k", type=int, default=4, help="samples per problem (default 4)")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per completion (default 48)")
    parser.add_argument("--template", choices=("r1zero", "chat"), default="r1zero", help="prompt template")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.model) if args.model else build_model(Path(tmp), args.task)
        llm = LLM(directory, device=args.device)
        problems = task_problems(args.task, n=args.n)
        evaluate(
            llm, task_problems(args.task, n=2, seed=99), k=2, max_tokens=4, template=args.template
        )  # warm-up

        start = time.perf_counter()
        report = evaluate(llm, problems, k=args.k, max_tokens=args.max_tokens, template=args.template)
        batched = time.perf_counter() - start

        stops = list(TEMPLATE_STOPS[args.template])
        start = time.perf_counter()
        loop_texts = []
        for problem in problems.problems:
            _, ids = render_prompt(llm.tokenizer, problems.task.prompt(problem), args.template)
            params = SamplingParams(
                max_tokens=args.max_tokens, temperature=0.6, top_p=0.95, n=args.k, stop=stops,
                seed=problem_seed(0, problem, problems.lang),
            )  # fmt: skip
            loop_texts.append([c.text for c in llm.generate([ids], params)[0].outputs])
        looped = time.perf_counter() - start

    batch_texts = [[s.text for s in r.samples] for r in report.records]
    # The batched texts carry the stop string put back; compare on the engine's own text.
    agree = sum(
        b == lt or b.removesuffix(stops[0] if stops else "") == lt
        for br, lr in zip(batch_texts, loop_texts, strict=True)
        for b, lt in zip(br, lr, strict=True)
    ) / (args.n * args.k)
    tokens = report.generated_tokens
    row = {
        "device": device_name(args.device),
        "task": args.task, "problems": len(problems.problems), "k": args.k, "max_tokens": args.max_tokens,
        "generated_tokens": tokens,
        "batched_seconds": round(batched, 3), "loop_seconds": round(looped, 3),
        "batched_tokens_per_s": round(tokens / batched, 1), "loop_tokens_per_s": round(tokens / looped, 1),
        "speedup": round(looped / batched, 2), "samples_agree": agree,
    }  # fmt: skip
    if args.json:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
