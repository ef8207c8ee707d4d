"""Checkpoints and resume: a SIGKILLed run resumes bit for bit; SIGTERM saves before exiting."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.train_fixtures import popen, write_micro_model, write_tokenizer
from tinyseek.checkpoint.run import list_checkpoints
from tinyseek.cli import main
from tinyseek.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("resume")
    model, tok = write_micro_model(root / "micro"), write_tokenizer(root / "tok")
    return ["pretrain", "--config", str(model), "--tokenizer", str(tok), "--task", "addition", "--format",
            "plain", "--seq-len", "64", "--batch-size", "8", "--eval-every", "5", "--eval-batches", "1",
            "--precision", "fp32", "--no-progress", "--no-tensorboard"]  # fmt: skip


def _wait_for(predicate, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"run ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def _steps_logged(run: Path) -> int:
    file = run / "metrics.jsonl"
    return len(file.read_text().splitlines()) if file.is_file() else 0


def test_sigkilled_run_resumes_bitwise(tmp_path: Path, run_args: list[str]) -> None:
    killed = tmp_path / "killed"
    process = popen(*run_args, "--max-steps", "400", "--checkpoint-every", "3", "--out", str(killed))
    # Kill mid-run, at any point after a checkpoint exists and a few more steps were logged.
    _wait_for(lambda: bool(list_checkpoints(killed / "checkpoints")) and _steps_logged(killed) >= 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resume_at = int(list_checkpoints(killed / "checkpoints")[-1].name.split("-")[1])
    total = resume_at + 5
    # The resumed run keeps its stored 400-step schedule; only where it stops changes.
    # In-process from here on (the CLI's main, one thread as in the child): saves two interpreter starts.
    assert main([*run_args, "--out", str(killed), "--resume", "--max-steps", str(total)]) == 0
    reference = tmp_path / "reference"
    assert (
        main([*run_args, "--max-steps", str(total), "--schedule-steps", "400", "--out", str(reference)]) == 0
    )
    resumed = {r["step"]: r["loss"] for r in read_metrics(killed)}
    uninterrupted = {r["step"]: r["loss"] for r in read_metrics(reference)}
    assert sorted(resumed) == list(range(1, total + 1))  # the killed run's later lines were dropped
    after = range(resume_at + 1, total + 1)
    assert [resumed[s] for s in after] == [uninterrupted[s] for s in after]
    assert json.loads((killed / "summary.json").read_text())["steps"] == total


def test_sigterm_saves_then_exits(tmp_path: Path, run_args: list[str]) -> None:
    out = tmp_path / "term"
    process = popen(*run_args, "--max-steps", "400", "--checkpoint-every", "1000", "--out", str(out))
    _wait_for(lambda: _steps_logged(out) >= 2, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "SIGTERM" and 2 <= summary["steps"] < 400
    assert list_checkpoints(out / "checkpoints")[-1].name == f"step-{summary['steps']:06d}"
    assert read_metrics(out)[-1]["step"] == summary["steps"]
    assert (out / "model" / "model.safetensors").is_file()
