"""TrainConfig: everything a pretraining, SFT or distillation run needs, with per-preset defaults.

Design choices:
- One dataclass for all three modes: SFT differs from pretraining only by its loss mask, distillation
  from SFT only by its student (every layer dense). `mode` says which mask to build.
- Size-dependent knobs (seq_len, batch, steps, lr, warmup, eval/checkpoint cadence) default to None
  and are resolved from `PRESET_DEFAULTS` by the model preset, so `tinyseek pretrain --preset tiny`
  alone is a sensible run of a couple of minutes on a laptop CPU.
- The resolved config is written to RUN_DIR/train_config.json; `resume=True` reads it back, so a
  resumed run is the same run (only the stopping knobs, max_steps and max_minutes, may change).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinyseek.checkpoint.run import write_text_atomically

Mode = Literal["pretrain", "sft"]
MODES: tuple[Mode, ...] = ("pretrain", "sft")
CONFIG_FILE = "train_config.json"
# Knobs a resumed run may change: when to stop, and how it reports.
# `ep` is a layout, not a setting of the run: sharded checkpoints reload into any expert-parallel degree.
RESUME_OVERRIDES = ("max_steps", "max_minutes", "resume", "tensorboard", "ep")

PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": dict(seq_len=256, batch_size=4, max_steps=200, lr=3e-3, warmup_steps=20,
                 eval_every=50, checkpoint_every=100),
    "small": dict(seq_len=1024, batch_size=8, max_steps=2000, lr=1e-3, warmup_steps=100,
                  eval_every=250, checkpoint_every=500),
}  # fmt: skip
FALLBACK_DEFAULTS: dict[str, Any] = dict(
    seq_len=4096,
    batch_size=1,
    max_steps=1000,
    lr=3e-4,
    warmup_steps=100,
    eval_every=500,
    checkpoint_every=500,
)


@dataclass
class TrainConfig:
    out: str
    mode: Mode = "pretrain"
    # Model: a preset, a config.json/model dir (fresh weights), or `init` (weights + tokenizer).
    preset: str | None = "tiny"
    model_config: str | None = None
    init: str | None = None
    all_dense: bool = False  # every layer a dense MLP (a distillation student)
    tokenizer: str | None = None
    vocab_size: int | None = None
    # Data: task worked solutions and/or JSONL files.
    tasks: list[str] = field(default_factory=list)
    doc_format: str = "r1zero"
    langs: list[str] = field(default_factory=lambda: ["en"])
    lang_weights: list[int] = field(default_factory=list)  # documents per cycle of each of langs (uneven mix)
    code_switch_rate: float = 0.0  # share of non-English documents worked in English
    difficulty: int = 1
    error_rate: float = 0.0
    self_check_rate: float = 0.0
    direct_rate: float = 0.0  # share of task documents that answer without reasoning
    direct_from: int = 0  # ...from this document on (the worked solutions alone before it)
    r1zero_preamble_share: float = 1.0  # share of r1zero documents with the template's preamble
    data: list[str] = field(default_factory=list)
    seed: int = 0
    # Batch and length of the run (None: from the preset).
    seq_len: int | None = None
    batch_size: int | None = None
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int | None = None
    schedule_steps: int | None = None  # length of the lr schedule; default max_steps
    max_minutes: float | None = None
    # Optimizer and schedule.
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    schedule: str = "cosine"  # or "wsd": warmup, stable, then decay over decay_fraction
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # Objective and balancing.
    mtp_weight: float = 0.3  # λ of the MTP loss
    balance_rate: float = 0.001
    balance_alpha: float = 0.0001
    # Speed.
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where it is faster (tinyseek.train.peak.use_bf16)
    activation_checkpointing: bool = False
    compile: bool = False
    # Under torchrun: ranks of the data dimension that also split the routed experts (1: FSDP2 only).
    ep: int = 1
    # Run bookkeeping.
    log_every: int = 1
    eval_every: int | None = None
    eval_batches: int = 4  # held-out rows = eval_batches x batch_size
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    resume: bool = False
    tensorboard: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the preset's defaults filled in, validated."""
        defaults = PRESET_DEFAULTS.get(self.preset or "", FALLBACK_DEFAULTS)
        filled = {k: (defaults[k] if getattr(self, k) is None else getattr(self, k)) for k in defaults}
        if self.schedule_steps is None:
            filled["schedule_steps"] = filled["max_steps"]
        config = dataclasses.replace(self, **filled)
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: expected {expected}")

        need(self.mode in MODES, "mode", f"one of {MODES}")
        need(bool(self.tasks) or bool(self.data) or self.resume, "tasks", "a task or a --data file")
        for name in ("seq_len", "batch_size", "grad_accum", "max_steps", "schedule_steps", "log_every",
                     "eval_every", "checkpoint_every"):  # fmt: skip
            value = getattr(self, name)
            need(isinstance(value, int) and value > 0, name, "a positive integer")
        need(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "> 0 or unset")
        need(self.lr is not None and self.lr > 0, "lr", "> 0")
        need(self.warmup_steps is not None and self.warmup_steps >= 0, "warmup_steps", ">= 0")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
        need(0 < self.decay_fraction <= 1, "decay_fraction", "in (0, 1]")
        need(self.grad_clip >= 0, "grad_clip", ">= 0 (0 disables clipping)")
        need(self.mtp_weight >= 0, "mtp_weight", ">= 0")
        need(self.balance_rate >= 0, "balance_rate", ">= 0 (0 disables the bias update)")
        need(self.balance_alpha >= 0, "balance_alpha", ">= 0 (0 disables the sequence-wise loss)")
        need(isinstance(self.ep, int) and self.ep >= 1, "ep", "a positive integer (1: no expert parallelism)")
        need(0 <= self.r1zero_preamble_share <= 1, "r1zero_preamble_share", "a share in [0, 1]")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1")
        need(self.eval_batches >= 0, "eval_batches", ">= 0")
        need(self.preset is not None or self.model_config is not None or self.init is not None,
             "preset", "a preset, a model config or an init model")  # fmt: skip

    def save(self, run_dir: Path) -> None:
        """Atomically: under torchrun the other ranks may be reading the previous copy (resume)."""
        write_text_atomically(run_dir / CONFIG_FILE, json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> TrainConfig:
        file = run_dir / CONFIG_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found: --resume needs a run directory written by tinyseek")
        raw = json.loads(file.read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def for_resume(self) -> TrainConfig:
        """The stored run's config, with this config's stopping knobs."""
        stored = TrainConfig.load(Path(self.out))
        changes = {k: getattr(self, k) for k in RESUME_OVERRIDES if getattr(self, k) is not None}
        return dataclasses.replace(stored, **changes, out=self.out)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_dir: Path
    steps: int
    tokens: int
    tokens_per_s: float
    final_loss: float
    stop_reason: str  # "max_steps", "max_minutes" or the signal name ("SIGINT", "SIGTERM")

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}
