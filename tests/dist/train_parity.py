"""torchrun script (2 gloo ranks): `tinyseek pretrain` with FSDP2, FSDP2 + EP(2), and resumes.

Launched once by tests/test_train_distributed.py as
    python -m torch.distributed.run --nproc-per-node=2 tests/dist/train_parity.py OUT_DIR ARG...
where ARG... are the pretrain flags shared with the one-process reference (model, tokenizer, data,
per-RANK batch size). Each run goes through the CLI's `main`, exactly as
`torchrun -m tinyseek pretrain` would, but in one launch (start-up costs seconds on shared cores):

    OUT/ep1       FSDP2 only, STEPS steps
    OUT/ep2       FSDP2 + EP(2): STEPS/2 steps, then --resume to STEPS (same schedule)
    OUT/ep2to1    a copy of ep2 at STEPS/2 resumed with --ep 1 (the checkpoint reshards)
    OUT/term      train() with EP(2) where only rank 0 gets SIGTERM (during step 2): all ranks must
                  stop after the same step and save; each writes OUT/term-rankR.json

The group is joined here once, so each train() call reuses it (and leaves it alone at its end).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tinyseek.cli import main as cli_main
from tinyseek.parallel import init_distributed
from tinyseek.train import TrainConfig, train

STEPS = 4


def pretrain(*args: str) -> None:
    code = cli_main(["pretrain", *args])
    if code != 0:
        raise SystemExit(f"rank {dist.get_rank()}: tinyseek pretrain {' '.join(args)} exited {code}")


def main(out: Path, shared: list[str]) -> None:
    torch.set_num_threads(1)
    init_distributed("cpu")
    schedule = ["--schedule-steps", str(STEPS), "--checkpoint-every", str(STEPS // 2)]
    pretrain(*shared, *schedule, "--max-steps", str(STEPS), "--out", str(out / "ep1"))
    pretrain(*shared, *schedule, "--max-steps", str(STEPS // 2), "--ep", "2", "--out", str(out / "ep2"))
    if dist.get_rank() == 0:
        shutil.copytree(out / "ep2", out / "ep2to1")
    dist.barrier()
    resume = ["--resume", "--max-steps", str(STEPS), "--no-progress", "--no-tensorboard", "--json"]
    pretrain(*resume, "--ep", "2", "--out", str(out / "ep2"))
    pretrain(*resume, "--ep", "1", "--out", str(out / "ep2to1"))

    def signal_rank0(step: int, max_steps: int, record: dict[str, Any]) -> None:
        if step == 2:  # progress runs on rank 0 only
            os.kill(os.getpid(), signal.SIGTERM)

    config = TrainConfig(out=str(out / "term"), preset=None, model_config=str(out / "micro"),
                         tokenizer=str(out / "tok"), tasks=["addition"], doc_format="plain", seq_len=32,
                         batch_size=2, max_steps=50, eval_batches=0, precision="fp32", tensorboard=False,
                         ep=2)  # fmt: skip
    result = train(config, progress=signal_rank0)
    (out / f"term-rank{dist.get_rank()}.json").write_text(json.dumps(result.as_dict()))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
