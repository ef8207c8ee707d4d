"""`tinyseek serve --model DIR`: the OpenAI/DeepSeek-compatible HTTP server.

Serves POST /v1/chat/completions (reasoning_content beside content, streaming, usage with
prefix-cache counts), a browser chat at /, POST /v1/completions, GET /v1/models, GET /health and
GET /metrics (Prometheus), over the engine's continuous batching. SIGTERM drains in-flight requests,
then exits.
"""

from __future__ import annotations

import argparse


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a model over an OpenAI/DeepSeek-compatible HTTP API", description=__doc__
    )
    p.add_argument(
        "--model", required=True, help="model directory (config.json, *.safetensors, tokenizer.json)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1/* (default: $TINYSEEK_API_KEY, else no key)",
    )
    p.add_argument(
        "--served-model-name", default=None, help="the model name clients send (default: the directory name)"
    )
    p.add_argument(
        "--max-queue",
        type=_positive,
        default=256,
        help="completions in flight (waiting or generating; a request with n=4 counts 4) beyond which new "
        "requests get 429 with Retry-After (default 256)",
    )
    p.add_argument(
        "--max-reasoning-tokens",
        type=_positive,
        default=None,
        help="default reasoning budget: close the reasoning with </think> after this many tokens "
        "(a request's max_reasoning_tokens overrides it; default: no budget)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=2 * 2**20,
        help="request body size limit (default 2 MiB: parsing the largest body then holds the event loop for ~60 ms at most)",
    )
    p.add_argument(
        "--max-prompt-chars",
        type=_positive,
        default=2**20,
        help="characters of prompt text per request (all prompts or messages together), checked before "
        "tokenizing (default 1048576)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests may finish after SIGTERM before being cancelled (default 30)",
    )
    p.add_argument(
        "--max-num-seqs", type=_positive, default=256, help="sequences batched together (default 256)"
    )
    p.add_argument(
        "--max-model-len", type=_positive, default=None, help="context length (default: the model's)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="weights dtype"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the decode forward while loading (15-40 s more before /health says ready)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from tinyseek.serve.app import serve
    from tinyseek.serve.state import ServerSettings

    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir}: expected a model directory with config.json")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: expected 1-65535")
    engine_options: dict[str, object] = {
        "max_num_seqs": args.max_num_seqs,
        "device": args.device,
        "dtype": getattr(torch, args.dtype),
        "compile": args.compile,
    }
    if args.max_model_len is not None:
        engine_options["max_model_len"] = args.max_model_len
    settings = ServerSettings(
        model_dir=model_dir,
        served_model_name=args.served_model_name,
        api_key=ServerSettings.key_from_env(args.api_key),
        max_queue=args.max_queue,
        max_reasoning_tokens=args.max_reasoning_tokens,
        max_body_bytes=args.max_body_bytes,
        max_prompt_chars=args.max_prompt_chars,
        engine_options=engine_options,
    )
    print(f"tinyseek serve: {model_dir} as '{settings.model_name}' on http://{args.host}:{args.port}/v1")
    print(f"chat in a browser: http://{args.host}:{args.port}/")
    serve(settings, args.host, args.port, args.drain_timeout)
    return 0
