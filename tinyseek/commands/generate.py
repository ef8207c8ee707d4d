"""`tinyseek generate` (one prompt, print or stream the completion) and `tinyseek chat` (interactive).

Both are thin loops over `tinyseek.LLM`. `chat` applies the model's chat template, streams the reply,
and shows the reasoning (the text before `</think>`) dimmed, apart from the answer; only the answer
goes back into the conversation, as the R1 template expects.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DIM, RESET = "\033[2m", "\033[0m"


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="model directory (config.json, *.safetensors, tokenizer.json)"
    )
    p.add_argument("--max-tokens", type=int, default=256, help="most tokens to generate (default 256)")
    p.add_argument("--temperature", type=float, default=0.6, help="0 = greedy (default 0.6, R1's advice)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "auto"],
        default="float32",
        help="weights and cache dtype (auto: the faster on this machine, timed)",
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--speculative", action="store_true", help="MTP speculative decoding (needs MTP weights)")
    p.add_argument(
        "--compile", action="store_true", help="compile the decode forward (faster steps after 15-40 s)"
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate",
        help="complete a prompt with a model directory",
        description="Generate a completion with tinyseek's engine (absorbed MLA over a latent cache).",
    )
    _model_args(g)
    prompt = g.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text (needs tokenizer.json in the model directory)")
    prompt.add_argument("--prompt-ids", help="prompt as comma-separated token ids, e.g. 1,2,3")
    g.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn in the chat template")
    g.add_argument("--n", type=int, default=1, help="completions to sample (default 1)")
    g.add_argument("--stream", action="store_true", help="print text as it is generated")
    g.add_argument("--json", action="store_true", help="machine-readable output")
    g.set_defaults(func=run_generate)

    c = sub.add_parser(
        "chat",
        help="interactive chat with a model directory (streams, shows reasoning apart)",
        description="Chat in the terminal: each line you type is a user turn; the reply streams, reasoning "
        "(before </think>) dimmed. Type /reset to clear the history, /exit or Ctrl-D to quit.",
    )
    _model_args(c)
    c.add_argument("--system", default=None, help="system prompt (R1 advises none)")
    c.add_argument(
        "--no-color", action="store_true", help="mark reasoning with [thinking] instead of dimming"
    )
    c.set_defaults(func=run_chat)


def _load(args: argparse.Namespace) -> Any:
    import torch

    from tinyseek import LLM

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": "auto"}[args.dtype]
    return LLM(
        args.model, dtype=dtype, device=args.device, speculative=args.speculative, compile=args.compile
    )


def _params(args: argparse.Namespace, n: int = 1) -> Any:
    from tinyseek import SamplingParams

    sampling = ("max_tokens", "temperature", "top_p", "top_k", "seed")  # flags named as the fields
    return SamplingParams(n=n, **{name: getattr(args, name) for name in sampling})


def run_generate(args: argparse.Namespace) -> int:
    params = _params(args, args.n)  # validate before loading the model
    llm = _load(args)
    if args.prompt_ids is not None:
        try:
            prompt: Any = [int(t) for t in args.prompt_ids.split(",")]
        except ValueError as err:
            raise ValueError(f"--prompt-ids={args.prompt_ids!r}: expected comma-separated integers") from err
    elif args.chat:
        prompt = llm.chat_prompt([{"role": "user", "content": args.prompt}])
    else:
        prompt = args.prompt
    start = time.perf_counter()
    if args.stream and not args.json and args.n == 1:
        for delta in llm.stream(prompt, params):
            print(delta.text, end="", flush=True)
            if delta.request_output is not None:
                out = delta.request_output
        print()
    else:
        out = llm.generate([prompt], params)[0]
        if not args.json:
            for completion in out.outputs:
                print(completion.text if llm.tokenizer is not None else completion.token_ids)
    elapsed = time.perf_counter() - start
    generated = sum(len(c.token_ids) for c in out.outputs)
    if args.json:
        print(
            json.dumps(
                {
                    "prompt": out.prompt,
                    "prompt_token_ids": out.prompt_token_ids,
                    "outputs": [
                        {"text": c.text, "token_ids": c.token_ids, "finish_reason": c.finish_reason}
                        for c in out.outputs
                    ],
                    "prompt_cache_hit_tokens": out.prompt_cache_hit_tokens,
                    "prompt_cache_miss_tokens": out.prompt_cache_miss_tokens,
                    "seconds": elapsed,
                    "tokens_per_second": generated / elapsed if elapsed > 0 else None,
                    "acceptance_rate": llm.stats.acceptance_rate if args.speculative else None,
                },
                indent=2,
            )
        )
    else:
        print(f"[{generated} tokens in {elapsed:.2f}s, {out.finish_reason}]", file=sys.stderr)
    return 0


class ReasoningPrinter:
    """Prints streamed text, reasoning (up to </think>) dimmed; a marker split across deltas is held."""

    def __init__(self, thinking: bool, color: bool):
        self.thinking, self.color, self.pending = thinking, color, ""
        self.answer = ""
        if thinking:
            self._open()

    def _open(self) -> None:
        print(DIM if self.color else "[thinking] ", end="", flush=True)

    def feed(self, text: str, final: bool = False) -> None:
        self.pending += text
        if not self.thinking and self.pending.startswith(THINK_OPEN):
            self.thinking, self.pending = True, self.pending[len(THINK_OPEN) :]
            self._open()
        if self.thinking:
            if THINK_CLOSE in self.pending:
                reasoning, self.pending = self.pending.split(THINK_CLOSE, 1)
                print(reasoning + (RESET if self.color else "\n[answer] "), end="", flush=True)
                self.thinking = False
            else:
                keep = 0 if final else len(THINK_CLOSE) - 1
                cut = max(0, len(self.pending) - keep)
                print(self.pending[:cut], end="", flush=True)
                self.pending = self.pending[cut:]
                return
        if not final and not self.answer and THINK_OPEN.startswith(self.pending):
            return  # the reply might still open with <think>
        self.answer += self.pending
        print(self.pending, end="", flush=True)
        self.pending = ""

    def close(self) -> None:
        self.feed("", final=True)
        print(RESET if self.color and self.thinking else "", flush=True)


def run_chat(args: argparse.Namespace) -> int:
    params = _params(args)
    llm = _load(args)
    if llm.tokenizer is None:
        raise ValueError(f"--model={args.model!r}: chat needs tokenizer.json in the model directory")
    color = sys.stdout.isatty() and not args.no_color
    history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
    print("tinyseek chat: /reset clears the history, /exit or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        rendered = llm.tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
        printer = ReasoningPrinter(thinking=str(rendered).rstrip().endswith(THINK_OPEN), color=color)
        for delta in llm.stream(llm.chat_prompt(history), params):
            printer.feed(delta.text)
        printer.close()
        history.append({"role": "assistant", "content": printer.answer.strip()})
