"""`tinyseek pretrain | sft | distill | plot`: thin commands over tinyseek.train.

pretrain and sft are the same trainer (SFT masks prompt tokens out of the loss); distill is SFT of a
student whose layers are all dense, on JSONL traces ({"prompt", "completion"}). Flags left unset
take the model preset's defaults (tinyseek.train.config.PRESET_DEFAULTS). `--resume` continues the run
in --out from its newest checkpoint with its stored settings (only --max-steps/--max-minutes apply).
Under `torchrun --nproc-per-node=N -m tinyseek pretrain ...` the same commands train with FSDP2
(`--ep K`: plus expert parallelism); --batch-size is then rows per rank.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

from tinyseek.commands.tasks import add_trace_knobs

_MODES = {"pretrain": "pretrain", "sft": "sft", "distill": "sft"}


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_train_flags(p: argparse.ArgumentParser, command: str) -> None:
    model = p.add_argument_group("model")
    model.add_argument("--preset", default=None, help="model preset for a fresh model (default tiny)")
    model.add_argument(
        "--config",
        dest="model_config",
        default=None,
        help="config.json or model directory for a fresh model (instead of --preset)",
    )
    model.add_argument(
        "--init",
        default=None,
        help="model directory to start from (weights and tokenizer), e.g. a pretrained run's model/",
    )
    model.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory; default: the --init model's, else one trained on the corpus",
    )
    model.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="vocabulary of a tokenizer trained on the corpus (default: the preset's)",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--task",
        type=_csv,
        default=[],
        help="comma-separated task names (train split), e.g. addition,countdown; "
        "default addition when no --data is given",
    )
    data.add_argument(
        "--format",
        dest="doc_format",
        default="r1zero",
        choices=["r1zero", "chat", "plain"],
        help="document format of task data (default r1zero)",
    )
    data.add_argument(
        "--lang", type=_csv, default=["en"], help="comma-separated languages of task data (default en)"
    )
    add_trace_knobs(data)
    data.add_argument(
        "--direct-from",
        type=int,
        default=0,
        metavar="DOC",
        help="direct answers only from this document on (worked solutions alone before it; default 0)",
    )
    data.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="FILE",
        help='JSONL files: {"text"}, {"prompt","completion"} or {"messages"} per line',
    )
    data.add_argument("--seed", type=int, default=0, help="seed of data order and initialization")
    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, help="run directory (checkpoints, metrics, final model/)")
    run.add_argument("--seq-len", type=int, default=None, help="tokens per row")
    run.add_argument("--batch-size", type=int, default=None, help="rows per micro-batch per process")
    run.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    run.add_argument(
        "--max-steps", type=int, default=None, help="optimizer steps (also the schedule's length)"
    )
    run.add_argument(
        "--max-minutes", type=float, default=None, help="time budget: stop cleanly and save when spent"
    )
    run.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="length of the lr schedule (default --max-steps): stop early within a longer schedule",
    )
    run.add_argument("--lr", type=float, default=None, help="peak learning rate")
    run.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr as a share of the peak")
    run.add_argument("--warmup-steps", type=int, default=None, help="linear warmup steps")
    run.add_argument("--schedule", default="cosine", choices=["cosine", "wsd"], help="decay after warmup")
    run.add_argument("--decay-fraction", type=float, default=0.2, help="WSD: share of the run spent decaying")
    run.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices")
    run.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0 disables)")
    run.add_argument(
        "--mtp-weight", type=float, default=0.3, help="λ of the MTP loss (0 disables MTP training)"
    )
    run.add_argument(
        "--balance-rate", type=float, default=0.001, help="γ of the aux-loss-free bias update (0 disables)"
    )
    run.add_argument(
        "--balance-alpha", type=float, default=0.0001, help="α of the sequence-wise balance loss (0 disables)"
    )
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    run.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="bf16 autocast over fp32 master weights, or fp32; auto: bf16 where it is faster",
    )
    run.add_argument("--activation-checkpointing", action="store_true", help="recompute blocks in backward")
    run.add_argument("--compile", action="store_true", help="torch.compile each block")
    run.add_argument(
        "--ep",
        type=int,
        default=1,
        help="under torchrun: expert-parallel degree, ranks that split the routed experts "
        "(a divisor of the process count and of n_routed_experts); 1 = FSDP2 only",
    )
    run.add_argument("--eval-every", type=int, default=None, help="steps between held-out evaluations")
    run.add_argument(
        "--eval-batches", type=int, default=4, help="held-out batches per evaluation (0 disables)"
    )
    run.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    run.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept")
    run.add_argument("--log-every", type=int, default=1, help="steps between metrics.jsonl lines")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its newest checkpoint"
    )
    run.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="JSONL metrics only")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_training, mode=_MODES[command], all_dense=command == "distill")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    helps = {
        "pretrain": "pretrain a model on task worked solutions and/or JSONL text",
        "sft": "supervised fine-tuning: like pretrain, but only completions are trained on",
        "distill": "SFT of a dense student (every layer dense) on JSONL traces, e.g. rejection-sampling output",
    }
    for command, text in helps.items():
        _add_train_flags(sub.add_parser(command, help=text, description=text), command)
    plot = sub.add_parser("plot", help="PNG curves of every numeric metric of a run")
    plot.add_argument("run_dir", help="run directory holding metrics.jsonl")
    plot.add_argument("--out", default=None, help="directory for the PNGs (default RUN_DIR/plots)")
    plot.add_argument("--json", action="store_true", help="print the files written as JSON")
    plot.set_defaults(func=run_plot)


def _config(args: argparse.Namespace) -> Any:
    import dataclasses

    from tinyseek.train.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["tasks"] = args.task or ([] if args.data or args.resume else ["addition"])
    values["langs"] = args.lang
    if values["preset"] is None and values["model_config"] is None and values["init"] is None:
        values["preset"] = "tiny"
    return TrainConfig(**values)


def run_training(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tinyseek.train.parallel_run import is_main_process
    from tinyseek.train.trainer import train

    if not is_main_process():  # under torchrun rank 0 speaks for the run; the others only warn
        logging.getLogger("tinyseek").setLevel(logging.WARNING)
    bar: Any = None

    def progress(step: int, max_steps: int, record: dict[str, Any]) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=max_steps, initial=step - 1, unit="step", dynamic_ncols=True)
        postfix = {"loss": f"{record['loss']:.3f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
        if "mfu" in record:
            postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)

    try:
        result = train(_config(args), progress=progress if args.progress else None)
    finally:
        if bar is not None:
            bar.close()
    if is_main_process():  # under torchrun rank 0 reports; the exit code is every rank's
        if args.json:
            print(json.dumps(result.as_dict(), indent=2))
        else:
            print(f"{result.steps} steps, {result.tokens:,} tokens, {result.tokens_per_s:,.0f} tokens/s, "
                  f"final loss {result.final_loss:.4f} ({result.stop_reason}); model: {result.model_dir}")  # fmt: skip
    if result.stop_reason.startswith("SIG"):
        return 128 + int(signal.Signals[result.stop_reason])
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from tinyseek.train.plot import plot_run

    files = plot_run(args.run_dir, args.out)
    if args.json:
        print(json.dumps([str(f) for f in files], indent=2))
    else:
        print(f"{len(files)} plots in {files[0].parent}")
    return 0
