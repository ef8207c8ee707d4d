"""Trainer runs at smoke size: pretrain, SFT and distill end to end, balancing, MTP metrics, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train_fixtures import cli, micro_config, write_micro_model, write_tokenizer
from tinyseek.train.config import TrainConfig
from tinyseek.train.metrics import read_metrics
from tinyseek.train.plot import plot_run
from tinyseek.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    return {"model": write_micro_model(root / "micro"), "tokenizer": write_tokenizer(root / "tok")}


def _run(out: Path, assets: dict[str, Path], **overrides: object) -> TrainConfig:
    base: dict[str, object] = dict(
        out=str(out), model_config=str(assets["model"]), tokenizer=str(assets["tokenizer"]),
        tasks=["addition"], doc_format="plain", seq_len=64, batch_size=4, max_steps=6, eval_every=3,
        eval_batches=1, checkpoint_every=6, precision="fp32", tensorboard=False,
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_pretrain_cli_smoke_trains_a_tokenizer_and_writes_a_loadable_model(tmp_path: Path, assets) -> None:
    out = tmp_path / "run"
    done = cli("pretrain", "--config", str(assets["model"]), "--task", "addition", "--seq-len", "64",
               "--batch-size", "4", "--max-steps", "8", "--lr", "0.01", "--out", str(out), "--no-progress",
               "--precision", "fp32", "--json")  # fmt: skip
    result = json.loads(done.stdout)
    assert result["steps"] == 8 and result["stop_reason"] == "max_steps"
    records = read_metrics(out)
    assert records[-1]["loss"] < records[0]["loss"]
    assert {"tokens_per_s", "mfu", "moe/max_violation", "grad_norm", "lr"} <= set(records[-1])
    from tinyseek import LLM, SamplingParams

    llm = LLM(str(out / "model"))
    (completion,) = llm.generate(["A"], SamplingParams(max_tokens=4, temperature=0))
    assert len(completion.token_ids) >= 1
    assert (out / "model" / "tokenizer.json").is_file() and (
        out / "model" / "generation_config.json"
    ).is_file()
    files = plot_run(out)
    assert {"loss.png", "moe__max_violation.png"} <= {f.name for f in files}
    assert all(f.stat().st_size > 1000 and f.read_bytes()[:4] == b"\x89PNG" for f in files)


def test_sft_trains_completions_only_from_a_pretrained_init(tmp_path: Path, assets) -> None:
    base = train(_run(tmp_path / "base", assets, max_steps=3))
    data = tmp_path / "sft.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"{i}+{i}=", "completion": f"{2 * i}"}) + "\n" for i in range(40))
    )
    result = train(_run(tmp_path / "sft", assets, mode="sft", init=str(base.model_dir), tokenizer=None,
                        model_config=None, tasks=[], data=[str(data)], lr=1e-2))  # fmt: skip
    records = read_metrics(tmp_path / "sft")
    assert result.steps == 6 and records[-1]["loss"] < records[0]["loss"]
    assert "eval/loss" in records[-1]  # every 20th record is held out
    # The completion is a few tokens; a prompt token in the loss would put it far above log(vocab).
    assert records[0]["loss"] < 6.0


def test_distill_cli_builds_a_dense_student(tmp_path: Path, assets) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text(
        "".join(json.dumps({"prompt": f"{i}*2=", "completion": f" {2 * i}"}) + "\n" for i in range(8))
    )
    out = tmp_path / "student"
    from tinyseek.cli import main

    args = ["distill", "--config", str(assets["model"]), "--tokenizer", str(assets["tokenizer"]), "--data",
            str(traces), "--seq-len", "32", "--batch-size", "2", "--max-steps", "3", "--out", str(out),
            "--no-progress", "--precision", "fp32"]  # fmt: skip
    assert main(args) == 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["first_k_dense_replace"] == config["num_hidden_layers"] == 2
    from safetensors import safe_open

    with safe_open(str(out / "model" / "model.safetensors"), "pt") as weights:
        main = [n for n in weights.keys() if n.startswith(("model.layers.0.", "model.layers.1."))]  # noqa: SIM118
    assert main and not any(".mlp.experts." in n or ".mlp.gate." in n for n in main)


def test_bias_balancing_lowers_max_violation(tmp_path: Path, assets) -> None:
    def violation(rate: float) -> float:
        out = tmp_path / f"gamma{rate}"
        train(
            _run(
                out, assets, max_steps=30, batch_size=8, balance_rate=rate, balance_alpha=0.0, eval_batches=0
            )
        )
        tail = read_metrics(out)[10:]
        return sum(r["moe/max_violation"] for r in tail) / len(tail)

    assert violation(0.01) < violation(0.0)


def test_mtp_accuracy_on_the_token_after_next_is_logged(tmp_path: Path, assets) -> None:
    train(_run(tmp_path / "mtp", assets))
    last = read_metrics(tmp_path / "mtp")[-1]
    assert 0.0 <= last["eval/mtp/accuracy"] <= 1.0 and last["eval/mtp/loss"] > 0
    train(_run(tmp_path / "nomtp", assets, mtp_weight=0.0))
    last = read_metrics(tmp_path / "nomtp")[-1]
    assert "loss/mtp" not in last and "eval/mtp/accuracy" not in last and "eval/accuracy" in last


def test_time_budget_stops_cleanly_and_saves(tmp_path: Path, assets) -> None:
    result = train(_run(tmp_path / "budget", assets, max_steps=1000, max_minutes=1e-4))
    assert result.stop_reason == "max_minutes" and result.steps == 1
    assert (tmp_path / "budget" / "checkpoints" / "step-000001" / "trainer_state.pt").is_file()
    assert (tmp_path / "budget" / "model" / "model.safetensors").is_file()


def test_activation_checkpointing_gives_the_same_losses(tmp_path: Path, assets) -> None:
    plain = train(_run(tmp_path / "plain", assets, max_steps=2, eval_batches=0))
    ckpt = train(_run(tmp_path / "ckpt", assets, max_steps=2, eval_batches=0, activation_checkpointing=True))
    assert plain.final_loss == pytest.approx(ckpt.final_loss, rel=1e-5)


def test_gradient_accumulation_equals_the_big_batch(tmp_path: Path, assets) -> None:
    big = train(_run(tmp_path / "big", assets, max_steps=2, batch_size=4, eval_batches=0))
    accumulated = train(
        _run(tmp_path / "acc", assets, max_steps=2, batch_size=2, grad_accum=2, eval_batches=0)
    )
    assert big.tokens == accumulated.tokens
    assert big.final_loss == pytest.approx(accumulated.final_loss, rel=1e-5)


def test_bad_config_is_a_clear_error(tmp_path: Path, assets, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"TrainConfig.seq_len=0: expected a positive integer"):
        train(_run(tmp_path / "bad", assets, seq_len=0))
    with pytest.raises(
        ValueError, match=r"seq_len=257: expected at most the model's max_position_embeddings=256"
    ):
        train(_run(tmp_path / "long", assets, seq_len=257))
    from tinyseek.cli import main

    assert main(["sft", "--data", str(tmp_path / "nothing.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "nothing.jsonl not found" in capsys.readouterr().err
    assert micro_config().num_hidden_layers == 2
