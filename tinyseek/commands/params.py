"""`tinyseek params CONFIG_OR_DIR`: parameter counts and KV-cache bytes per token, from the config alone."""

from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params",
        help="parameter counts and KV-cache size of a preset, model directory or config.json",
        description="Counts total, activated-per-token and MTP parameters, and the KV-cache bytes per token "
        "of MLA's latent cache against a full per-head K/V cache. Reads only the config.",
    )
    p.add_argument(
        "config",
        help="preset name (deepseek-v3, deepseek-v2-lite, tiny, small, r2-hybrid), model dir or config.json",
    )
    p.add_argument("--dtype-bytes", type=int, default=2, help="bytes per cached number (2 = bf16)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinyseek.config import load_config
    from tinyseek.model_size import ModelSize

    if args.dtype_bytes not in (1, 2, 4):
        raise ValueError(f"--dtype-bytes={args.dtype_bytes}: expected 1, 2 or 4")
    cfg = load_config(args.config)
    size = ModelSize(cfg).as_dict(args.dtype_bytes)
    if args.json:
        print(json.dumps({"config": str(args.config), **size}, indent=2))
        return 0
    rows = [
        ("total parameters", f"{size['total']:,}", f"{size['total'] / 1e9:.2f}B"),
        ("activated per token", f"{size['activated']:,}", f"{size['activated'] / 1e9:.2f}B"),
        ("  of which embedding + head", f"{size['embedding'] + size['head']:,}", ""),
        ("MTP modules (own)", f"{size['mtp']:,}", f"{size['mtp'] / 1e9:.2f}B"),
        ("MTP modules (as stored)", f"{size['mtp_stored']:,}", f"{size['mtp_stored'] / 1e9:.2f}B"),
        ("latent KV cache, bytes/token", f"{size['latent_cache_bytes_per_token']:,}", ""),
        (
            "full per-head K/V, bytes/token",
            f"{size['full_kv_bytes_per_token']:,}",
            f"{size['kv_compression']:.1f}x larger",
        ),
    ]
    print(f"{args.config}  (cache dtype: {args.dtype_bytes} bytes)")
    for name, exact, human in rows:
        print(f"  {name:32s} {exact:>20s}  {human}")
    return 0
