"""Serving throughput: N concurrent streaming chat requests against the same N made one at a time.

Starts the real server (uvicorn, loopback) on a random-weight model built from a preset with a small
trained tokenizer, or targets a running server with --url. Every request is seeded, so both runs
generate exactly the same tokens (checked); the difference is continuous batching. Prints completion
tokens/s of each run, the speed-up, and time-to-first-token percentiles (client side, streaming).

    PYTHONPATH=. python bench/serve.py                          # tiny preset, 32 requests x 64 tokens
    PYTHONPATH=. python bench/serve.py --preset small --requests 64 --max-tokens 32 --json
    PYTHONPATH=. python bench/serve.py --url http://127.0.0.1:8000 --model NAME
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import openai
import torch

CORPUS = [
    "Let me add the units first, then carry the tens: 27 + 45 = 72.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Check the answer again; if it is wrong, start over from the first step.",
] * 20


def build_model(preset: str, directory: Path) -> Path:
    from tinyseek.config import ModelConfig
    from tinyseek.model.transformer import Transformer
    from tinyseek.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(CORPUS, vocab_size=400)
    tokenizer.save_pretrained(directory)
    config = ModelConfig.preset(
        preset,
        vocab_size=tokenizer.vocab_size,
        num_nextn_predict_layers=0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Transformer(config).save_pretrained(directory)
    return directory


def start_server(model_dir: Path) -> tuple[str, object]:
    import socket

    from tinyseek.serve.app import make_server
    from tinyseek.serve.state import ServerSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server(
        ServerSettings(model_dir=model_dir, served_model_name="bench", max_queue=1024), "127.0.0.1", port
    )
    threading.Thread(target=server.run, daemon=True).start()
    import httpx

    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return base, server
        except httpx.TransportError:
            pass
        time.sleep(0.1)


async def one(client: openai.AsyncOpenAI, model: str, i: int, max_tokens: int) -> dict:
    start = time.perf_counter()
    first = None
    pieces: list[str] = []
    tokens = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Request {i}: what is {i} + {2 * i}?"}],
        max_tokens=max_tokens,
        seed=i,
        temperature=0.8,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta = choice.delta.model_dump()
            text = (delta.get("reasoning_content") or "") + (delta.get("content") or "")
            if text and first is None:
                first = time.perf_counter() - start
            pieces.append(text)
    return {
        "ttft": first if first is not None else time.perf_counter() - start,
        "tokens": tokens,
        "text": "".join(pieces),
    }


async def run(
    base: str, model: str, requests: int, max_tokens: int, concurrent: bool
) -> tuple[float, list[dict]]:
    client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="bench", max_retries=0, timeout=600)
    start = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(*(one(client, model, i, max_tokens) for i in range(requests)))
    else:
        results = [await one(client, model, i, max_tokens) for i in range(requests)]
    wall = time.perf_counter() - start
    await client.close()
    return wall, list(results)


def percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": q[49], "p90": q[89], "p99": q[98]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--preset", default="tiny", help="model preset for the random-weight model (default tiny)"
    )
    parser.add_argument("--url", default=None, help="bench a running server instead of starting one")
    parser.add_argument("--model", default="bench", help="model name to request (with --url)")
    parser.add_argument("--requests", type=int, default=32, help="number of requests (default 32)")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="max completion tokens per request (default 64)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    if args.url is None:
        base, _ = start_server(build_model(args.preset, Path(tempfile.mkdtemp(prefix="bench-serve-"))))
        model = "bench"
    else:
        base, model = args.url.rstrip("/"), args.model
    asyncio.run(run(base, model, 2, 4, concurrent=True))  # warm-up
    seq_wall, seq = asyncio.run(run(base, model, args.requests, args.max_tokens, concurrent=False))
    con_wall, con = asyncio.run(run(base, model, args.requests, args.max_tokens, concurrent=True))
    tokens = sum(r["tokens"] for r in seq)
    report = {
        "device": f"cpu ({torch.get_num_threads()} threads)",
        "preset": args.preset if args.url is None else None,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "completion_tokens": tokens,
        "same_outputs": [r["text"] for r in seq] == [r["text"] for r in con],
        "one_at_a_time": {
            "seconds": seq_wall,
            "tokens_per_s": tokens / seq_wall,
            "ttft_s": percentiles([r["ttft"] for r in seq]),
        },
        "concurrent": {
            "seconds": con_wall,
            "tokens_per_s": tokens / con_wall,
            "ttft_s": percentiles([r["ttft"] for r in con]),
        },
    }
    report["speedup"] = report["concurrent"]["tokens_per_s"] / report["one_at_a_time"]["tokens_per_s"]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.requests} streaming chat requests x <= {args.max_tokens} tokens, {tokens} completion tokens, {report['device']}"
    )
    for name in ("one_at_a_time", "concurrent"):
        r = report[name]
        t = r["ttft_s"]
        print(
            f"  {name:14s} {r['seconds']:7.2f} s  {r['tokens_per_s']:8.1f} tok/s   "
            f"TTFT p50 {t['p50'] * 1000:7.1f} ms  p90 {t['p90'] * 1000:7.1f} ms  p99 {t['p99'] * 1000:7.1f} ms"
        )
    print(f"  speed-up {report['speedup']:.2f}x, identical outputs: {report['same_outputs']}")


if __name__ == "__main__":
    main()
