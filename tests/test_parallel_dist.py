"""FSDP2 and FSDP2 + EP under real torchrun (2 gloo ranks) against one process; DCP checkpoints.

One torchrun launch (tests/dist/parallel_parity.py) runs every distributed check and writes its
results; the tests here read them and do the one-process side (load, convert, transformers)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import DeepseekV3ForCausalLM

from tinyseek import cli
from tinyseek.checkpoint.run import latest_checkpoint, model_from_checkpoint, step_directory
from tinyseek.model.transformer import Transformer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "dist" / "parallel_parity.py"
LOSS_TOL = 1e-5
GRAD_TOL = 1e-5  # relative to each gradient's largest entry


pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(out: Path, nproc: int, *args: str) -> dict:
    """torchrun NPROC gloo ranks on the parity script; returns its results.json."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--master-port={free_port()}",
        str(SCRIPT),
        str(out),
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dist")
    return out, launch(out, 2, "--ep", "1,2", "--extras")


def check_layout(results: dict, layout: str) -> None:
    r = results["layouts"][layout]
    assert len(results["single"]) == 5 and len(r["losses"]) == (2 if "_" in layout else 5)
    assert r["loss_diff"] <= LOSS_TOL, f"{layout}: per-step loss differs by {r['loss_diff']} from one process"
    # AdamW hides a wrong gradient scale, so the first step's gradients are compared too.
    grads = r["grad_diff"]
    assert any("experts" in name for name in grads)
    worst = max(grads, key=grads.get)
    assert grads[worst] <= GRAD_TOL, f"{layout}: gradient of {worst} off by {grads[worst]} (relative)"
    # Gradient norms over both meshes (clip_grad_norm_), clipping active at MAX_NORM = 0.5.
    assert r["norm_diff"] <= 1e-5, f"{layout}: gradient norms {r['norms']} (relative diff {r['norm_diff']})"
    # Plain forward() on the sharded model after 5 steps (AdamW amplifies rounding: looser).
    assert r["eval_diff"] <= 1e-3, f"{layout}: logits after 5 steps differ by {r['eval_diff']}"


@pytest.mark.parametrize("layout", ["ep1", "ep2", "tied_ep1", "skewed_ep2"])
def test_losses_and_gradients_equal_one_process(run, layout):
    check_layout(run[1], layout)


def test_skewed_routing_leaves_one_rank_without_rows(run):
    _, r = run
    assert r["skewed_idle_grad"] == 0.0 and r["skewed_busy_grad"] > 0.0


def test_bf16_mixed_precision_trains_close_to_fp32(run):
    r = run[1]["layouts"]["bf16_ep2"]
    assert r["stored_dtypes"] == ["torch.float32"]  # bf16 only for compute; AdamW updates fp32 shards
    assert r["eval_dtype"] == "torch.bfloat16"
    single = run[1]["single"]
    assert abs(r["losses"][0] - single[0]) <= 0.01, "bf16 forward far from fp32 before any update"
    assert r["loss_diff"] <= 0.05, f"bf16 losses {r['losses']} drift from fp32 {single}"


def test_resume_from_checkpoint_continues_identically(run):
    _, r = run
    assert r["resumed_at"] == 3
    assert r["resumed"] == r["saved_losses"][3:]


def test_bad_degrees_are_named(run):
    _, r = run
    assert "ep=3" in r["errors"]["ep_world"] and "world size 2" in r["errors"]["ep_world"]
    assert "ep=2" in r["errors"]["ep_experts"] and "n_routed_experts=3" in r["errors"]["ep_experts"]


@pytest.mark.slow
def test_four_ranks_with_expert_replicas(tmp_path):
    """ep=2 on 4 ranks: each expert has 2 replicas that FSDP shards (dp_shard_mod_ep=2); ep=4 too."""
    r = launch(tmp_path, 4, "--ep", "4,2")
    for layout in ("ep4", "ep2"):
        check_layout(r, layout)
    assert r["resumed"] == r["saved_losses"][3:]
    model = model_from_checkpoint(tmp_path / "ckpt")
    full = torch.load(tmp_path / "full.pt")
    for name, tensor in full.items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_two_rank_checkpoint_loads_in_one_process(run):
    out, _ = run
    assert latest_checkpoint(out / "ckpt") == step_directory(out / "ckpt", 5, sharded=True)
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["latest", "step-00000003", "step-00000005"]
    model = model_from_checkpoint(out / "ckpt")
    full = torch.load(out / "full.pt")
    state = model.state_dict()
    assert set(full) <= set(state)
    for name, tensor in full.items():
        assert torch.equal(state[name], tensor), name


def test_convert_cli_gives_hf_model_with_same_logits(run, tmp_path, capsys):
    out, _ = run
    hf_dir = tmp_path / "hf"
    # In process (a subprocess costs ~10 s of imports on the shared CI cores); same argv as the shell's.
    assert cli.main(["checkpoint", "convert", str(out / "ckpt"), str(hf_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint"].endswith("step-00000005") and "config.json" in summary["files"]

    reference = model_from_checkpoint(out / "ckpt")
    ours = Transformer.from_pretrained(hf_dir)
    hf = DeepseekV3ForCausalLM.from_pretrained(hf_dir).eval()
    ids = torch.randint(0, reference.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(ids)
        assert torch.equal(ours(ids), expected)
        diff = (hf(ids).logits - expected).abs().max().item()
    assert diff <= 1e-4, f"transformers logits differ by {diff}"
    assert len(ours.mtp) == 1  # MTP weights survive the conversion
