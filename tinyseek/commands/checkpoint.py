"""`tinyseek checkpoint convert`: a sharded training checkpoint (DCP) -> a Hugging Face model directory."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parsers(subparsers: Any) -> None:
    parser = subparsers.add_parser("checkpoint", help="inspect and convert training checkpoints")
    sub = parser.add_subparsers(dest="checkpoint_command", metavar="SUBCOMMAND", required=True)

    convert = sub.add_parser(
        "convert",
        help="convert a DCP checkpoint (any number of ranks, FSDP/EP) to the HF safetensors layout",
        description="Loads the sharded model state of a torch.distributed.checkpoint directory into one "
        "process and writes config.json + safetensors that Transformer.from_pretrained and transformers' "
        "DeepseekV3ForCausalLM load. Optimizer state is left out.",
    )
    convert.add_argument(
        "checkpoint", help="a step directory (with .metadata) or a checkpoint root whose `latest` names one"
    )
    convert.add_argument("out", help="output model directory (created or overwritten)")
    convert.add_argument(
        "--config",
        default=None,
        help="preset, model dir or config.json; default: the config.json saved in the checkpoint",
    )
    convert.add_argument("--json", action="store_true", help="print a JSON summary")
    convert.set_defaults(func=convert_checkpoint)


def convert_checkpoint(args: argparse.Namespace) -> int:
    from tinyseek.checkpoint.run import convert_to_hf, resolve_checkpoint
    from tinyseek.config import load_config

    source = resolve_checkpoint(args.checkpoint)
    config = load_config(args.config) if args.config else None
    out = convert_to_hf(source, args.out, config)
    files = sorted(p.name for p in out.iterdir())
    if args.json:
        print(json.dumps({"checkpoint": str(source), "out": str(out), "files": files}, indent=2))
    else:
        print(f"converted {source} -> {out} ({', '.join(files)})")
    return 0
