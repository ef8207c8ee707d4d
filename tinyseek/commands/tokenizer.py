"""`tinyseek tokenizer train|encode`: train a byte-level BPE with DeepSeek's special tokens, inspect ids."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("tokenizer", help="train or inspect a tokenizer")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser("train", help="train a byte-level BPE on text files and/or task corpora")
    train.add_argument(
        "--corpus", nargs="+", default=[], metavar="FILE", help="UTF-8 text files, one document a line"
    )
    train.add_argument(
        "--task", default="", help="comma-separated task names whose prompts and traces join the corpus"
    )
    train.add_argument(
        "--task-problems", type=int, default=2000, help="problems per task and language (default 2000)"
    )
    train.add_argument(
        "--vocab-size", type=int, required=True, help="vocabulary size, special tokens included"
    )
    train.add_argument(
        "--small-alphabet",
        action="store_true",
        help="only the corpus's bytes enter the vocabulary (tiny demo vocabularies; other bytes become unk)",
    )
    train.add_argument("--out", required=True, help="directory for tokenizer.json + tokenizer_config.json")
    train.add_argument("--json", action="store_true", help="print a JSON summary")
    train.set_defaults(func=train_tokenizer)

    encode = sub.add_parser("encode", help="print the token ids and pieces of a text")
    encode.add_argument("text", help="text to encode")
    encode.add_argument("--tokenizer", required=True, help="directory with tokenizer.json")
    encode.add_argument("--no-special", action="store_true", help="do not add BOS")
    encode.add_argument("--json", action="store_true", help="print JSON")
    encode.set_defaults(func=encode_text)


def task_corpus(names: list[str], problems: int) -> Iterator[str]:
    """R1-Zero-formatted prompts and traces (some slipped, some self-checked) in every language."""
    import itertools
    import random

    from tinyseek.chat_template import r1_zero_completion, r1_zero_prompt
    from tinyseek.tasks import LANGUAGES, ReasoningTask, get_task

    rng = random.Random(0)
    for name in names:
        task = get_task(name)
        for lang in LANGUAGES:
            for problem in itertools.islice(task.sample(seed=0), problems):
                if isinstance(task, ReasoningTask):
                    trace = task.trace(problem, lang, error_rate=0.3, self_check_rate=0.3, rng=rng)
                    yield r1_zero_prompt(task.prompt(problem, lang)) + r1_zero_completion(
                        trace.reasoning, trace.answer
                    )
                else:
                    yield task.prompt(problem, lang) + "\n" + task.solution(problem, lang)


def file_corpus(paths: list[str]) -> Iterator[str]:
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"corpus file {path} not found")
        with open(path, encoding="utf-8") as lines:
            yield from lines


def train_tokenizer(args: argparse.Namespace) -> int:
    import itertools

    from tinyseek.tokenizer import Tokenizer

    names = [n for n in args.task.split(",") if n]
    if not names and not args.corpus:
        raise ValueError("give --corpus FILE(s) and/or --task NAMES to train on")
    texts = itertools.chain(file_corpus(args.corpus), task_corpus(names, args.task_problems))
    start = time.perf_counter()
    tokenizer = Tokenizer.train(texts, args.vocab_size, full_byte_alphabet=not args.small_alphabet)
    seconds = time.perf_counter() - start
    tokenizer.save_pretrained(args.out)
    summary = {"out": args.out, "vocab_size": tokenizer.vocab_size, "train_seconds": round(seconds, 3)}
    print(
        json.dumps(summary)
        if args.json
        else f"wrote {args.out}: {tokenizer.vocab_size} tokens in {seconds:.2f}s"
    )
    return 0


def encode_text(args: argparse.Namespace) -> int:
    from tinyseek.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(args.tokenizer)
    ids = tokenizer.encode(args.text, add_special_tokens=not args.no_special)
    pieces = [tokenizer.decode([i]) for i in ids]
    if args.json:
        print(json.dumps({"ids": ids, "pieces": pieces}, ensure_ascii=False))
    else:
        print(" ".join(map(str, ids)))
        print(" | ".join(pieces))
    return 0
