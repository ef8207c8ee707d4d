"""`tinyseek <command>`: the command line.

Each command lives in `tinyseek/commands/<group>.py` as a thin function over the library and
registers itself through `add_parsers(subparsers)`. Modules import their heavy dependencies
inside the command function, so `tinyseek --help` stays fast. Only the CLI prints; the library logs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One module per command group; each defines add_parsers(subparsers).
COMMAND_MODULES = [
    "tinyseek.commands.params",
    "tinyseek.commands.cost",
    "tinyseek.commands.tasks",
    "tinyseek.commands.tokenizer",
    "tinyseek.commands.generate",
    "tinyseek.commands.serve",
    "tinyseek.commands.eval",
    "tinyseek.commands.grpo",
    "tinyseek.commands.checkpoint",
    "tinyseek.commands.train",
    "tinyseek.commands.r1zero",
    "tinyseek.commands.r1",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyseek",
        description="DeepSeek-R1 in readable PyTorch: models, training, GRPO, inference, serving.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `tinyseek ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: a clear one-line message, no traceback.
        print(f"tinyseek {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
