"""`tinyseek pretrain` under torchrun (2 gloo ranks, FSDP2 and FSDP2 + EP) against one process.

One launch (tests/dist/train_parity.py) runs every distributed training; the one-process reference
runs here, in process, on the same global batch (4 rows: 2 per rank there, 4 here), in fp32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train_fixtures import ROOT, child_env, write_micro_model, write_tokenizer
from tinyseek import LLM, SamplingParams
from tinyseek.checkpoint.run import latest_checkpoint
from tinyseek.cli import main
from tinyseek.model.transformer import Transformer
from tinyseek.train.metrics import read_metrics
from tinyseek.train.parallel_run import ParallelRun

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = ROOT / "tests" / "dist" / "train_parity.py"
STEPS = 4
LOSS_TOL = 1e-5
LOGIT_TOL = 1e-4
LOGGED = ("loss", "loss/mtp", "loss/balance", "grad_norm", "eval/loss", "eval/mtp/loss")


def shared_args(root: Path) -> list[str]:
    """Flags of every run, distributed or not, except the per-rank batch size and the stopping knobs."""
    model, tok = write_micro_model(root / "micro"), write_tokenizer(root / "tok")
    # lr 3e-3 without warmup: 4 steps move the weights enough for a wrong update to show in the logits.
    return ["--config", str(model), "--tokenizer", str(tok), "--task", "addition", "--format", "plain",
            "--seq-len", "32", "--lr", "3e-3", "--warmup-steps", "0", "--eval-every", "2",
            "--eval-batches", "1", "--precision", "fp32", "--keep-checkpoints", "1", "--no-progress",
            "--no-tensorboard", "--json"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distrain")
    args = shared_args(root)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(SCRIPT), str(root), *args, "--batch-size", "2"]  # fmt: skip
    launched = subprocess.Popen(
        cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # The one-process reference meanwhile (its own core while the ranks start up).
    single = [*args, "--batch-size", "4", "--max-steps", str(STEPS), "--checkpoint-every", "2"]
    assert main(["pretrain", *single, "--out", str(root / "single")]) == 0
    stdout, stderr = launched.communicate(timeout=600)
    assert launched.returncode == 0, stdout[-3000:] + stderr[-6000:]
    return root


def logged(run: Path) -> dict[str, list[float]]:
    records = read_metrics(run)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)), "one metrics line per step, rank 0 only"
    return {key: [r[key] for r in records if key in r] for key in LOGGED}


@pytest.mark.parametrize("layout", ["ep1", "ep2", "ep2to1"])
def test_per_step_losses_equal_one_process(runs: Path, layout: str) -> None:
    single, ours = logged(runs / "single"), logged(runs / layout)
    for key in LOGGED:
        assert len(ours[key]) == len(single[key]) > 0, key
        diff = max(abs(a - b) for a, b in zip(ours[key], single[key], strict=True))
        assert diff <= LOSS_TOL, f"{layout} {key}: {ours[key]} vs one process {single[key]}"
    # The run really trains (lr 3e-3, no warmup), so equal losses are not equal by standing still.
    assert abs(single["loss"][0] - single["loss"][-1]) > 1000 * LOSS_TOL


@pytest.mark.parametrize("layout", ["ep1", "ep2", "ep2to1"])
def test_final_model_dir_matches_one_process(runs: Path, layout: str) -> None:
    reference_dir, ours_dir = runs / "single" / "model", runs / layout / "model"
    assert sorted(p.name for p in ours_dir.iterdir()) == sorted(p.name for p in reference_dir.iterdir())
    reference, ours = Transformer.from_pretrained(reference_dir), Transformer.from_pretrained(ours_dir)
    ids = torch.randint(0, reference.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(ids) - reference(ids)).abs().max().item()
    assert diff <= LOGIT_TOL, f"{layout}: final logits differ by {diff} from the one-process model"
    # Every rank applied the same aux-loss-free bias update as one process (all-reduced loads).
    biases = {n: b for n, b in ours.named_buffers() if n.endswith("e_score_correction_bias")}
    assert biases and any(b.abs().max() > 0 for b in biases.values())
    for name, bias in reference.named_buffers():
        if name in biases:
            assert torch.allclose(biases[name], bias, atol=1e-6), name


def test_final_model_serves_with_llm_like_one_process(runs: Path) -> None:
    greedy = SamplingParams(max_tokens=6, temperature=0)
    outputs = [LLM(runs / r / "model").generate(["12+34="], greedy)[0] for r in ("single", "ep2")]
    assert outputs[0].token_ids == outputs[1].token_ids and len(outputs[1].token_ids) > 0


def test_sharded_checkpoints_are_pruned_and_complete(runs: Path) -> None:
    for layout in ("ep1", "ep2", "ep2to1"):
        root = runs / layout / "checkpoints"
        assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000004"]  # --keep-checkpoints 1
        latest = latest_checkpoint(root)
        assert latest is not None
        names = {p.name for p in latest.iterdir()}
        assert {"trainer_state-rank00000.pt", "trainer_state-rank00001.pt", "tokenizer.json"} <= names
    summary = json.loads((runs / "ep2" / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["stop_reason"] == "max_steps"


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(runs: Path) -> None:
    """Rank 0 alone got SIGTERM during step 2; had rank 1 gone on, the launch would have hung."""
    results = [json.loads((runs / f"term-rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["steps"], r["stop_reason"]) for r in results] == [(3, "SIGTERM")] * 2
    assert latest_checkpoint(runs / "term" / "checkpoints") == runs / "term" / "checkpoints" / "step-00000003"
    assert (runs / "term" / "model" / "model.safetensors").is_file()


def test_expert_parallel_without_torchrun_is_refused() -> None:
    with pytest.raises(ValueError, match="--ep 2: expert parallelism needs several processes"):
        ParallelRun.start(torch.device("cpu"), ep=2)
