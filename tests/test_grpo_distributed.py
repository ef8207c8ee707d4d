"""`tinyseek grpo`, `eval` and `rejection-sample` under torchrun (2 gloo ranks) against one process.

The distributed runs are real torchrun launches of tests/dist/grpo_runs.py; the one-process references
run here, in process, on the same global batch (6 prompts x G = 4 a step: 3 prompts sampled per rank
there), in fp32 on the tiny MoE policy (4 routed experts, so `--ep 2` holds 2 per rank)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.fixtures import grpo_policy_dir
from tests.train_fixtures import ROOT, child_env
from tinyseek.checkpoint.run import latest_checkpoint
from tinyseek.cli import main
from tinyseek.parallel.ranks import shard_range
from tinyseek.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

SCRIPT = ROOT / "tests" / "dist" / "grpo_runs.py"
STEPS, KILL_AFTER = 4, 2
TOL = 1e-5
COMPARED = ("loss", "grad_norm", "entropy", "kl", "reward/total/mean", "completion_length/mean")
SHARED = ["--task", "addition", "-G", "4", "--prompts-per-step", "6", "--max-new-tokens", "12",
          "--lr", "1e-3", "--overlong-cache", "10", "--micro-batch-tokens", "150", "--max-steps", str(STEPS), "--eval-every", "2", "--eval-problems", "3",
          "--save-every", "2", "--keep-checkpoints", "2", "--log-rollouts", "--no-tensorboard", "--json"]  # fmt: skip
EVAL = ["--task", "addition", "-k", "3", "--n", "5", "--max-tokens", "12", "--seed", "1"]


def launch(mode: str, root: Path, policy: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(SCRIPT), mode, str(root), str(policy), *SHARED]  # fmt: skip
    return subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(launched: subprocess.Popen[str], ok: bool = True) -> None:
    stdout, stderr = launched.communicate(timeout=600)
    assert (launched.returncode == 0) == ok, stdout[-3000:] + stderr[-6000:]


def grpo(policy: Path, run_dir: Path, *extra: str) -> None:
    assert main(["grpo", "--model", str(policy), *SHARED, "--run-dir", str(run_dir), *extra]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distgrpo")
    policy = grpo_policy_dir(root / "policy")
    launched = launch("parity", root, policy)
    # The one-process references meanwhile (their own core while the ranks start up).
    grpo(policy, root / "single")
    grpo(policy, root / "single-beta", "--beta", "0.1")
    grpo(policy, root / "single-dapo", "--preset", "dapo")
    assert (
        main(["eval", "--model", str(policy), *EVAL, "--greedy", "--out", str(root / "eval-single.json")])
        == 0
    )
    assert (
        main(["rejection-sample", "--model", str(policy), *EVAL, "--out", str(root / "traces-single.jsonl")])
        == 0
    )
    finish(launched)
    return root


def rollouts(run: Path, step: int) -> list[tuple[list[int], float]]:
    lines = (run / "samples" / f"rollouts-step-{step:06d}.jsonl").read_text().splitlines()
    return [(row["completion_ids"], row["reward"]) for row in map(json.loads, lines)]


def max_diffs(run: Path, reference: Path, steps: range) -> dict[str, float]:
    """Largest per-step difference of each compared metric over `steps`."""
    ours = {r["step"]: r for r in read_metrics(run) if "loss" in r}
    theirs = {r["step"]: r for r in read_metrics(reference) if "loss" in r}
    return {
        key: max(abs(ours[s][key] - theirs[s][key]) for s in steps)
        for key in COMPARED
        if key in theirs[steps[0]]
    }


def weight_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    return max((left[k] - right[k]).abs().max().item() for k in left)


@pytest.mark.parametrize(
    ("layout", "reference"),
    [("ep1", "single"), ("ep2", "single"), ("beta", "single-beta"), ("dapo", "single-dapo")],
)
def test_two_ranks_equal_one_process(runs: Path, layout: str, reference: str) -> None:
    for step in range(1, STEPS + 1):
        assert rollouts(runs / layout, step) == rollouts(runs / reference, step), f"{layout} step {step}"
    diffs = max_diffs(runs / layout, runs / reference, range(1, STEPS + 1))
    assert set(diffs) >= {"loss", "grad_norm", "entropy"} and all(d <= TOL for d in diffs.values()), diffs
    if layout == "beta":
        assert diffs["kl"] <= TOL
    if layout == "dapo":  # dynamic sampling drew more groups than a step keeps, the same ones on every rank
        drawn = [r["sampling/groups_drawn"] for r in read_metrics(runs / layout) if "loss" in r]
        theirs = [r["sampling/groups_drawn"] for r in read_metrics(runs / reference) if "loss" in r]
        assert drawn == theirs and max(drawn) > 6
    assert weight_diff(runs / layout / "final", runs / reference / "final") <= TOL
    # The run really trains (lr 1e-3): equal weights are not equal by standing still.
    assert weight_diff(runs / reference / "final", runs / "policy") > 100 * TOL
    # Periodic evaluation: split over the ranks, the same samples and metrics.
    for step in (0, 2, 4):
        name = f"samples/eval-step-{step:06d}.jsonl"
        assert (runs / layout / name).read_text() == (runs / reference / name).read_text()


def test_one_metrics_line_per_step_and_sharded_checkpoints(runs: Path) -> None:
    records = [r for r in read_metrics(runs / "ep2") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    root = runs / "ep2" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000002", "step-00000004"]
    latest = latest_checkpoint(root)
    assert latest is not None and (latest / "trainer_state-rank00001.pt").is_file()


def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(runs: Path) -> None:
    results = [json.loads((runs / f"term-rank{r}.json").read_text()) for r in (0, 1)]
    assert results == [{"steps": 2, "stopped": "signal"}] * 2
    assert latest_checkpoint(runs / "term" / "checkpoints") == runs / "term" / "checkpoints" / "step-00000002"
    assert (runs / "term" / "final" / "model.safetensors").is_file()


def test_eval_and_rejection_sampling_equal_one_process(runs: Path) -> None:
    ours, theirs = (json.loads((runs / name).read_text()) for name in ("eval.json", "eval-single.json"))
    assert ours["records"] == theirs["records"] and len(ours["records"]) == 5
    assert ours["overall"] == theirs["overall"] and ours["families"] == theirs["families"]
    assert ours["settings"] == theirs["settings"]
    assert (runs / "traces.jsonl").read_text() == (runs / "traces-single.jsonl").read_text()


def test_sigkilled_run_resumes_on_two_ranks_and_on_one_and_one_process_run_on_two(runs: Path) -> None:
    killed = runs / "kill"
    finish(launch("kill", runs, runs / "policy"), ok=False)
    assert latest_checkpoint(killed / "checkpoints") == killed / "checkpoints" / f"step-{KILL_AFTER:08d}"
    for copy in ("kill-1", "kill-2"):
        shutil.copytree(killed, runs / copy)
    # And the other way: a one-process run cut back to step KILL_AFTER, resumed on 2 ranks.
    shutil.copytree(runs / "single", runs / "single-2")
    shutil.rmtree(runs / "single-2" / "checkpoints" / f"step-{STEPS:06d}")
    launched = launch("resume", runs, runs / "policy")
    grpo(runs / "policy", runs / "kill-1", "--resume")  # one process, from the 2-rank shards
    finish(launched)
    after = range(KILL_AFTER + 1, STEPS + 1)
    for copy, reference in (("kill-1", "ep1"), ("kill-2", "ep1"), ("single-2", "single")):
        for step in after:
            assert rollouts(runs / copy, step) == rollouts(runs / reference, step), f"{copy} step {step}"
        diffs = max_diffs(runs / copy, runs / reference, after)
        assert all(d <= TOL for d in diffs.values()), (copy, diffs)
        assert weight_diff(runs / copy / "final", runs / reference / "final") <= TOL
        steps = [r["step"] for r in read_metrics(runs / copy) if "loss" in r]
        assert steps == list(range(1, STEPS + 1)), "metrics.jsonl trimmed and continued, one line per step"
    assert (
        latest_checkpoint(runs / "single-2" / "checkpoints")
        == runs / "single-2" / "checkpoints" / "step-00000004"
    )


def test_shard_range_cuts_contiguous_balanced_blocks() -> None:
    """Gathering the blocks in rank order must restore the global order (what parity rests on)."""
    for n in range(10):
        for world in range(1, 5):
            blocks = [shard_range(n, rank, world) for rank in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    with pytest.raises(ValueError, match="rank 2 of world 2"):
        shard_range(4, 2, 2)
