"""MTP speculative decoding on a trained model: plain vs speculative greedy decoding, same prompts.

A model trained with the MTP loss (any `tinyseek pretrain` run keeps its MTP module) drafts one token per
step with its MTP head; the main model verifies it in the same forward. Prints tokens/s of both, the
acceptance rate of the drafts, whether the outputs are identical (they must be), and the device.

    PYTHONPATH=. python bench/speculative.py --model runs/base/model --task addition --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model directory with MTP weights (HF layout)")
    parser.add_argument("--task", default="addition", help="task whose test-split prompts are completed")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each, alternating; best kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from tinyseek import LLM, SamplingParams
    from tinyseek.chat_template import r1_zero_prompt
    from tinyseek.tasks import get_task

    if args.threads:
        torch.set_num_threads(args.threads)
    options = dict(max_num_seqs=max(args.batch_sizes), enable_prefix_caching=False)
    plain = LLM(args.model, **options)  # type: ignore[arg-type]
    if plain.engine.model.config.num_nextn_predict_layers < 1:
        raise SystemExit(f"--model {args.model}: has no MTP module (num_nextn_predict_layers = 0)")
    spec = LLM(plain.engine.model, plain.tokenizer, speculative=True, **options)  # type: ignore[arg-type]
    task = get_task(args.task)
    problems = list(itertools.islice(task.sample(seed=0, split="test"), max(args.batch_sizes)))
    prompts = [r1_zero_prompt(task.prompt(p)) for p in problems]
    params = SamplingParams(temperature=0, max_tokens=args.new_tokens)
    report: dict = {"device": f"cpu ({torch.get_num_threads()} threads)", "model": args.model, "runs": []}
    for batch in args.batch_sizes:
        times = {"plain": float("inf"), "speculative": float("inf")}
        spec.engine.stats.draft_tokens = spec.engine.stats.accepted_tokens = 0
        for _ in range(args.repeats):
            for name, llm in (("plain", plain), ("speculative", spec)):
                start = time.perf_counter()
                outs = llm.generate(prompts[:batch], params)
                times[name] = min(times[name], time.perf_counter() - start)
                if name == "plain":
                    plain_out = outs
                else:
                    spec_out = outs
        tokens = sum(len(o.token_ids) for o in plain_out)
        same = sum(a.token_ids == b.token_ids for a, b in zip(plain_out, spec_out, strict=True))
        run = {
            "batch": batch,
            "plain_tok_s": tokens / times["plain"],
            "speculative_tok_s": tokens / times["speculative"],
            "speedup": times["plain"] / times["speculative"],
            "acceptance_rate": spec.stats.acceptance_rate,
            "identical_sequences": f"{same}/{batch}",
        }
        report["runs"].append(run)
        if not args.json:
            print(
                f"batch {batch:3d}: plain {run['plain_tok_s']:8.1f} tok/s | speculative "
                f"{run['speculative_tok_s']:8.1f} tok/s | x{run['speedup']:.2f} | acceptance "
                f"{run['acceptance_rate']:.2f} | identical {run['identical_sequences']}",
                flush=True,
            )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"device: {report['device']}")


if __name__ == "__main__":
    main()
