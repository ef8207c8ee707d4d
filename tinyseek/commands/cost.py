"""`tinyseek cost`: what a model costs to train and to serve, and what our own tokens cost.

A thin layer over tinyseek.cost: it resolves the accelerator, runs the arithmetic, and prints each
figure next to the formula that produced it (or the same as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tinyseek.cost.hardware import PRECISIONS
from tinyseek.cost.training import DEFAULT_PRICE_PER_GPU_HOUR

DEFAULT_SEQ_LEN = 4096  # DeepSeek-V3's pre-training sequence length


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cost",
        help="training and inference cost of a model from first principles; price a measured run",
        description=(
            "Parameters, training FLOPs per token (formula printed), GPU-hours and dollars from an MFU "
            "(or the MFU implied by GPU-hours), KV-cache bytes per token, decode FLOPs, and with "
            "--measured the dollars per 1M tokens of a tinyseek run."
        ),
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG_OR_DIR",
        help="preset name (deepseek-v3, r2-hybrid, tiny, ...), model directory or config.json",
    )
    p.add_argument("--train-tokens", type=float, metavar="N", help="training tokens, e.g. 14.8e12")
    p.add_argument(
        "--seq-len",
        type=int,
        default=DEFAULT_SEQ_LEN,
        metavar="L",
        help=f"training sequence length and decode context (default {DEFAULT_SEQ_LEN})",
    )
    p.add_argument("--gpu", metavar="NAME", help="accelerator from the table (see --list-gpus)")
    p.add_argument(
        "--peak-tflops",
        type=float,
        metavar="X",
        help="dense peak TFLOP/s of any other accelerator (instead of --gpu)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="bf16",
        help="which peak MFU is measured against, and bytes per stored weight (default bf16)",
    )
    p.add_argument("--mfu", type=float, metavar="F", help="model FLOPs utilization in (0, 1] → GPU-hours")
    p.add_argument("--gpu-hours", type=float, metavar="H", help="GPU-hours spent → implied MFU")
    price = "dollars per GPU-hour, or per hour of the measured machine (default %(default)s)"
    p.add_argument(
        "--price-per-gpu-hour", type=float, default=DEFAULT_PRICE_PER_GPU_HOUR, metavar="P", help=price
    )
    p.add_argument(
        "--memory-gb",
        type=float,
        metavar="M",
        help="memory for weights + KV cache in GB (default: the --gpu's memory)",
    )
    p.add_argument(
        "--measured",
        metavar="RUN_DIR",
        help="a run directory with metrics.jsonl or summary.json carrying tokens_per_s",
    )
    p.add_argument(
        "--list-gpus", action="store_true", help="print the accelerator table with sources, and nothing else"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_cost)


def _resolve_peak(args: argparse.Namespace) -> tuple[float | None, dict[str, Any] | None]:
    from tinyseek.cost.hardware import accelerator
    from tinyseek.cost.training import check_positive

    if args.gpu is not None and args.peak_tflops is not None:
        raise ValueError(
            f"gpu={args.gpu!r}, peak_tflops={args.peak_tflops!r}: expected one of the two, not both"
        )
    if args.peak_tflops is not None:
        check_positive("peak_tflops", args.peak_tflops)
        return args.peak_tflops, None
    if args.gpu is None:
        return None, None
    part = accelerator(args.gpu)
    info = {"key": part.key, "name": part.name, "memory_gb": part.memory_gb,
            "bandwidth_tb_s": part.bandwidth_tb_s, "source": part.source}  # fmt: skip
    needs_peak = args.mfu is not None or args.gpu_hours is not None
    return (part.peak_tflops(args.precision) if needs_peak else None), info


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `tinyseek cost` prints, as one dictionary (the --json output)."""
    from tinyseek.config import load_config
    from tinyseek.cost.flops import decode_flops_per_token, training_flops_per_token
    from tinyseek.cost.measured import cost_per_million_tokens, read_throughput
    from tinyseek.cost.memory import cache_fit, kv_cache_bytes_per_token
    from tinyseek.cost.training import check_positive, check_price, training_cost
    from tinyseek.model_size import ModelSize

    if args.config is None and args.measured is None:
        raise ValueError("nothing to price: expected CONFIG_OR_DIR, --measured RUN_DIR, or both")
    check_price(args.price_per_gpu_hour)
    if args.mfu is not None and args.gpu_hours is not None:
        raise ValueError(f"mfu={args.mfu!r}, gpu_hours={args.gpu_hours!r}: expected one of the two, not both")
    peak, gpu = _resolve_peak(args)
    report: dict[str, Any] = {"price_per_gpu_hour": args.price_per_gpu_hour, "accelerator": gpu}
    if args.config is not None:
        cfg = load_config(args.config)
        size = ModelSize(cfg)
        report["config"] = args.config
        report["note"] = cfg.extra.get("tinyseek_note")
        report["parameters"] = {
            k: v for k, v in size.as_dict().items() if k in
            ("total", "activated", "activated_non_embedding", "embedding", "head", "mtp", "mtp_stored")
        }  # fmt: skip
        flops = training_flops_per_token(cfg, args.seq_len)
        report["training_flops_per_token"] = flops.as_dict()
        training: dict[str, Any] | None = None
        if args.train_tokens is not None:
            check_positive("train_tokens", args.train_tokens)
            training = {"tokens": args.train_tokens, "total_flops": args.train_tokens * flops.total}
            if args.mfu is not None or args.gpu_hours is not None:
                if peak is None:
                    raise ValueError("--mfu/--gpu-hours need a peak: expected --gpu NAME or --peak-tflops X")
                bill = training_cost(args.train_tokens, flops.total, peak, mfu=args.mfu,
                                     gpu_hours=args.gpu_hours, price_per_gpu_hour=args.price_per_gpu_hour)  # fmt: skip
                training = {**bill.as_dict(), "precision": args.precision}
        elif args.mfu is not None or args.gpu_hours is not None:
            raise ValueError("--mfu/--gpu-hours need the training tokens: expected --train-tokens N")
        report["training"] = training
        memory_gb = args.memory_gb if args.memory_gb is not None else (gpu or {}).get("memory_gb")
        report["inference"] = {
            "kv_cache_bytes_per_token_bf16": kv_cache_bytes_per_token(cfg).as_dict(),
            "decode_flops_per_token": decode_flops_per_token(cfg, args.seq_len).as_dict(),
            "cache_fit": cache_fit(cfg, memory_gb, args.precision).as_dict()
            if memory_gb is not None
            else None,
        }
    if args.measured is not None:
        report["measured"] = [
            {"key": t.key, "tokens_per_s": t.tokens_per_s, "source": t.source,
             "dollars_per_million_tokens": cost_per_million_tokens(t.tokens_per_s, args.price_per_gpu_hour)}
            for t in read_throughput(args.measured)
        ]  # fmt: skip
    return report


def _count(n: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return f"{n:.4g}"


def _dollars(x: float) -> str:
    if x >= 1e6:
        return f"${x / 1e6:.3f}M"
    if x >= 1e3:
        return f"${x:,.0f}"
    return f"${x:.4g}" if x < 0.01 else f"${x:.2f}"


def format_report(r: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    gpu = r["accelerator"]
    if "config" in r:
        p, f, inf = r["parameters"], r["training_flops_per_token"], r["inference"]
        add(f"tinyseek cost: {r['config']}")
        if r["note"]:
            add(f"NOTE: {r['note']}")
        add("parameters")
        add(f"  total (main model)        {_count(p['total'])}")
        add(
            f"  activated per token       {_count(p['activated'])}  (embedding {_count(p['embedding'])} "
            f"and head {_count(p['head'])} included)"
        )
        add(f"  activated non-embedding   {_count(p['activated_non_embedding'])}")
        add(
            f"  MTP modules               {_count(p['mtp'])} own, {_count(p['mtp_stored'])} as stored "
            "(with their embedding and head copies)"
        )
        add(
            f"training FLOPs per token (L = {f['seq_len']}, mean causal context (L+1)/2 = {f['mean_context']:g})"
        )
        add(f"  formula: {f['formula']}")
        add(f"  6·N_act_nonemb            {f['matmul']:.4g}")
        add(f"  6·vocab·hidden (head)     {f['head']:.4g}")
        add(f"  attention                 {f['attention']:.4g}")
        add(f"  MTP                       {f['mtp']:.4g}")
        add(f"  total                     {f['total']:.4g}")
        t = r["training"]
        if t is not None:
            add(
                f"training: {_count(t['tokens'])} tokens × {f['total']:.4g} FLOPs = {t['total_flops']:.4g} FLOPs"
            )
            if "mfu" in t:
                where = f"{gpu['name']}, " if gpu else ""
                add(f"  peak {t['peak_tflops']:g} TFLOP/s ({where}dense {t['precision']})")
                if t["mfu_given"]:
                    add(
                        f"  MFU {t['mfu']:.1%} given → {_count(t['gpu_hours'])} GPU-hours "
                        "(= FLOPs / (peak · MFU) / 3600)"
                    )
                else:
                    add(
                        f"  {_count(t['gpu_hours'])} GPU-hours given → implied MFU {t['mfu']:.1%} of the "
                        f"dense {t['precision']} peak (= FLOPs / (GPU-hours · 3600 · peak))"
                    )
                add(
                    f"  cost: {_count(t['gpu_hours'])} GPU-hours × {_dollars(t['price_per_gpu_hour'])}/GPU-hour "
                    f"= {_dollars(t['dollars'])}"
                )
            else:
                add("  (add --gpu/--peak-tflops with --mfu or --gpu-hours for GPU-hours and dollars)")
        kv, d, fit = inf["kv_cache_bytes_per_token_bf16"], inf["decode_flops_per_token"], inf["cache_fit"]
        add("inference")
        add("  KV cache per token, bf16, all layers:")
        add(f"    latent (kv_lora_rank + qk_rope_head_dim)·layers·2   {kv['latent']:,} B")
        add(
            f"    full per-head K/V heads·(qk+v head dims)·layers·2   {kv['full_per_head_kv']:,} B "
            f"({kv['full_over_latent']:.1f}× latent)"
        )
        add(
            f"    GQA-8 min(8, heads)·(qk+v head dims)·layers·2       {kv['gqa8']:,} B "
            f"({kv['gqa8_over_latent']:.1f}× latent)"
        )
        add(
            f"  decode FLOPs per token at context {d['context']}: {d['total']:.4g} "
            f"(weights {d['weights']:.4g} + absorbed attention {d['attention_absorbed']:.4g})"
        )
        add(f"    formula: {d['formula']}")
        if fit is not None:
            m = fit["tokens_in_memory"]
            add(
                f"  tokens of cache in {fit['memory_gb']:g} GB (all of it): latent {m['latent']:,}, "
                f"full K/V {m['full_per_head_kv']:,}, GQA-8 {m['gqa8']:,}"
            )
            left = fit["tokens_after_weights"]
            weights = f"{fit['weights_gb']:,.4g} GB of {fit['weight_precision']} weights"
            if left is None:
                add(
                    f"  after {weights}: nothing left for cache (weights alone exceed {fit['memory_gb']:g} GB)"
                )
            else:
                add(
                    f"  after {weights}: latent {left['latent']:,}, full K/V {left['full_per_head_kv']:,}, "
                    f"GQA-8 {left['gqa8']:,}"
                )
        if gpu:
            add(
                f"accelerator: {gpu['name']}: {gpu['memory_gb']} GB, {gpu['bandwidth_tb_s']} TB/s; "
                f"source: {gpu['source']}"
            )
    for m in r.get("measured", []):
        add(
            f"measured {m['key']}: {m['tokens_per_s']:,.1f} tokens/s ({m['source']}) at "
            f"{_dollars(r['price_per_gpu_hour'])}/hour → {_dollars(m['dollars_per_million_tokens'])} per 1M tokens"
        )
    return "\n".join(lines)


def format_accelerators() -> str:
    from tinyseek.cost.hardware import ACCELERATORS

    def show(x: float | None) -> str:
        return "-" if x is None else f"{x:g}"

    lines = [f"{'key':7} {'bf16 TFLOP/s':>12} {'fp8 TFLOP/s':>11} {'GB':>5} {'TB/s':>6}  name; source"]
    for a in ACCELERATORS.values():
        lines.append(f"{a.key:7} {show(a.bf16_tflops):>12} {show(a.fp8_tflops):>11} {show(a.memory_gb):>5} "
                     f"{show(a.bandwidth_tb_s):>6}  {a.name}; {a.source}")  # fmt: skip
    return "\n".join(lines)


def run_cost(args: argparse.Namespace) -> int:
    if args.list_gpus:
        from dataclasses import asdict

        from tinyseek.cost.hardware import ACCELERATORS

        if args.json:
            print(json.dumps([asdict(a) for a in ACCELERATORS.values()], indent=2))
        else:
            print(format_accelerators())
        return 0
    report = build_report(args)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0
