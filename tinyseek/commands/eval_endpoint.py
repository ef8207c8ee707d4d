"""`tinyseek eval --base-url URL --served-model NAME`: the same evaluation against an HTTP endpoint.

The flags that only an endpoint needs live here; the problems and sampling flags are `tinyseek eval`'s.
The key comes from --api-key, else $OPENAI_API_KEY, else $TINYSEEK_API_KEY (what `tinyseek serve`
reads), so a key never has to appear on a command line. Without --results the samples go to
`eval-results/<model>-<hash of the settings>.jsonl`: rerunning the same command resumes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

KEY_ENVS = ("OPENAI_API_KEY", "TINYSEEK_API_KEY")
# flag -> (argparse dest, default): what only an endpoint run uses, and what only a local model uses
ENDPOINT_ONLY = {
    "--served-model": ("served_model", None),
    "--api-key": ("api_key", None),
    "--concurrency": ("concurrency", 8),
    "--timeout": ("timeout", 600.0),
    "--max-retries": ("max_retries", 8),
    "--results": ("results", None),
    "--tokenizer": ("tokenizer", None),
    "--price-in": ("price_in", None),
    "--price-out": ("price_out", None),
    "--no-progress": ("no_progress", False),
}
MODEL_ONLY = {
    "--dtype": ("dtype", "float32"),
    "--device": ("device", "cpu"),
    "--max-num-seqs": ("max_num_seqs", 256),
    "--compile": ("compile", False),
}


def check_mode_flags(args: argparse.Namespace) -> None:
    """A flag of the other mode would silently do nothing: refuse it, naming it."""
    wrong, mode = (MODEL_ONLY, "--model") if args.base_url else (ENDPOINT_ONLY, "--base-url")
    given = [flag for flag, (dest, default) in wrong.items() if getattr(args, dest) != default]
    if given:
        raise ValueError(f"{', '.join(given)} only applies with {mode}")


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("endpoint evaluation (instead of --model)")
    g.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 or https://api.deepseek.com/v1",
    )
    g.add_argument("--served-model", default=None, help="the model name the endpoint serves")
    g.add_argument(
        "--api-key", default=None, help="bearer key (default: $OPENAI_API_KEY, else $TINYSEEK_API_KEY)"
    )
    g.add_argument(
        "--concurrency",
        type=int,
        default=ENDPOINT_ONLY["--concurrency"][1],
        help="requests in flight (default 8)",
    )
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")
    g.add_argument(
        "--max-retries", type=int, default=8, help="retries of a request on 429/5xx/timeouts (default 8)"
    )
    g.add_argument(
        "--results",
        default=None,
        metavar="FILE.jsonl",
        help="finished samples, appended as they come; an interrupted run resumes from it "
        "(default: eval-results/<model>-<settings hash>.jsonl)",
    )
    g.add_argument(
        "--tokenizer",
        default=None,
        metavar="DIR",
        help="model directory whose tokenizer counts reasoning tokens as in-process eval does "
        "(default: the server's usage.reasoning_tokens)",
    )
    g.add_argument("--price-in", type=float, default=None, help="dollars per 1M prompt tokens, for the cost")
    g.add_argument(
        "--price-out", type=float, default=None, help="dollars per 1M completion tokens, for the cost"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def api_key(explicit: str | None) -> str | None:
    if explicit is not None:
        return explicit
    return next((os.environ[name] for name in KEY_ENVS if os.environ.get(name)), None)


def default_results(args: argparse.Namespace) -> Path:
    """A file name that changes with the settings that decide a sample, so the same run resumes."""
    fields = [args.base_url, args.served_model, args.temperature, args.top_p, args.max_tokens]
    fields += [args.template or "chat", args.seed]
    digest = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", args.served_model)
    return Path("eval-results") / f"{name}-{digest}.jsonl"


def _check_endpoint(args: argparse.Namespace) -> None:
    if not args.served_model:
        raise ValueError("--base-url needs --served-model NAME (GET /v1/models on the endpoint lists it)")
    if args.concurrency < 1:
        raise ValueError(f"--concurrency {args.concurrency}: expected at least 1")
    if args.max_retries < 0:
        raise ValueError(f"--max-retries {args.max_retries}: expected 0 or more")
    for flag, value in (("--price-in", args.price_in), ("--price-out", args.price_out)):
        if value is not None and value < 0:
            raise ValueError(f"{flag} {value}: expected dollars per 1M tokens, >= 0")


def endpoint_report(args: argparse.Namespace, sets: list[Any]) -> Any:
    from tinyseek.eval.endpoint import evaluate_endpoint
    from tinyseek.eval.endpoint_client import EndpointClient

    _check_endpoint(args)
    tokenizer = None
    if args.tokenizer is not None:
        from tinyseek.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
    results = Path(args.results) if args.results else default_results(args)
    with EndpointClient(
        args.base_url, args.served_model, api_key(args.api_key), timeout=args.timeout,
        max_retries=args.max_retries, concurrency=args.concurrency,
    ) as client:  # fmt: skip
        return evaluate_endpoint(
            client, sets, results, k=args.k, temperature=args.temperature, top_p=args.top_p,
            max_tokens=args.max_tokens, template=args.template or "chat", seed=args.seed,
            greedy=args.greedy, concurrency=args.concurrency, tokenizer=tokenizer,
            price_in=args.price_in, price_out=args.price_out, progress=not args.no_progress,
        )  # fmt: skip
