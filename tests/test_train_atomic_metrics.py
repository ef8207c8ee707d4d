"""Atomic directories and the metrics log: what a killed or resumed run relies on."""

import json
import logging
import sys

import pytest

from tinyseek.checkpoint.run import atomic_directory
from tinyseek.train.metrics import MetricsLogger, read_metrics


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as d:
        (d / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_directory(target) as d:
        (d / "a.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with atomic_directory(target) as d:
        (d / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_metrics_resume_drops_steps_at_or_after_resume(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for step in range(1, 6):
            log.log(step, {"loss": 1.0 / step, "note": "x"})
    with MetricsLogger(tmp_path, tensorboard=False, resume_step=4) as log:
        log.log(4, {"loss": 0.5})
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == [1, 2, 3, 4]
    assert read_metrics(tmp_path)[-1]["loss"] == 0.5


def test_metrics_fresh_run_starts_over_and_bad_line_is_named(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 2.0})
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 3.0})
    assert [r["loss"] for r in read_metrics(tmp_path)] == [3.0]
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write("{broken\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_metrics(tmp_path)
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_missing_tensorboard_is_said_once_and_jsonl_still_written(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="tinyseek.train.metrics"):
        for run in ("a", "b"):
            with MetricsLogger(tmp_path / run) as logger:
                logger.log(1, {"loss": 1.0})
    warnings = [r for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "pip install tensorboard" in warnings[0].getMessage()
    assert [r["loss"] for r in read_metrics(tmp_path / "b")] == [1.0]
