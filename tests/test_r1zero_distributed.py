"""`tinyseek r1zero --preset smoke` under torchrun (2 gloo ranks): every stage runs over the ranks and
rank 0 writes one run directory, as one process would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.train_fixtures import child_env
from tinyseek.checkpoint.run import is_sharded, latest_checkpoint
from tinyseek.r1zero.pipeline import STAGES
from tinyseek.r1zero.recipe import Recipe


def test_smoke_pipeline_runs_under_torchrun(tmp_path: Path) -> None:
    out = tmp_path / "r1z"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "tinyseek", "r1zero", "--preset", "smoke", "--threads", "1", "--json", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert done.stdout.count('"criteria_met"') == 1, "rank 0 alone prints the summary"
    summary = json.loads((out / "summary.json").read_text())
    assert set(json.loads((out / "stages.json").read_text())) == set(STAGES)
    recipe = Recipe.preset("smoke")
    records = json.loads((out / "eval" / "base_report.json").read_text())["records"]
    assert len(records) == recipe.eval.problems_per_family * len(recipe.families)
    # Both trainings ran sharded: their checkpoints are DCP directories.
    for stage in ("pretrain", "grpo"):
        latest = latest_checkpoint(out / stage / "checkpoints")
        assert latest is not None and is_sharded(latest), stage
    assert (
        summary["grpo"] and (out / "model" / "model.safetensors").is_file() and (out / "report.md").is_file()
    )
