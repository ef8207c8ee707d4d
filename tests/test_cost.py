"""tinyseek cost: DeepSeek-V3's published bill redone by hand, KV-cache sizes, bad inputs, measured runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinyseek.cli import main
from tinyseek.config import ModelConfig
from tinyseek.cost import (
    accelerator,
    cache_fit,
    cost_per_million_tokens,
    decode_flops_per_token,
    kv_cache_bytes_per_token,
    read_throughput,
    training_cost,
    training_flops_per_token,
)

ROOT = Path(__file__).resolve().parents[1]
V3 = ModelConfig.preset("deepseek-v3")

# ---- DeepSeek-V3 by hand, from the published sizes -------------------------------------------------
H, V, LAYERS, HEADS = 7168, 129280, 61, 128
Q_LORA, KV_LORA, NOPE, ROPE, VDIM = 1536, 512, 128, 64, 128
DENSE_INTER, DENSE_LAYERS, ROUTED, SHARED, EXPERT_INTER, ACTIVE = 18432, 3, 256, 1, 2048, 8
SEQ = 4096

ATTN = (
    H * Q_LORA + Q_LORA  # q_a_proj + q_a_layernorm
    + Q_LORA * HEADS * (NOPE + ROPE)  # q_b_proj
    + H * (KV_LORA + ROPE) + KV_LORA  # kv_a_proj_with_mqa + kv_a_layernorm
    + KV_LORA * HEADS * (NOPE + VDIM)  # kv_b_proj
    + HEADS * VDIM * H  # o_proj
)  # fmt: skip
DENSE = 3 * H * DENSE_INTER
MOE_ACTIVE = ROUTED * (H + 1) + (ACTIVE + SHARED) * 3 * H * EXPERT_INTER  # gate (+bias) + 9 experts
BLOCK_NORMS = 2 * H
N_ACT_NONEMB = LAYERS * (ATTN + BLOCK_NORMS) + DENSE_LAYERS * DENSE + (LAYERS - DENSE_LAYERS) * MOE_ACTIVE + H
MTP_ACTIVE = 2 * H + 2 * H * H + (ATTN + MOE_ACTIVE + BLOCK_NORMS) + H  # enorm, hnorm, eh_proj, block, norm
ATTN_FWD_PER_LAYER = 2 * HEADS * (NOPE + ROPE + VDIM) * (SEQ + 1) / 2  # causal mean context (L+1)/2
FLOPS_PER_TOKEN = (
    6 * N_ACT_NONEMB + 6 * V * H + 3 * ATTN_FWD_PER_LAYER * LAYERS  # main model
    + 6 * (MTP_ACTIVE + V * H) + 3 * ATTN_FWD_PER_LAYER  # one MTP depth
)  # fmt: skip
TOKENS, GPU_HOURS, PEAK = 14.8e12, 2.788e6, 989.5e12
IMPLIED_MFU = TOKENS * FLOPS_PER_TOKEN / (GPU_HOURS * 3600 * PEAK)


def test_v3_training_flops_match_the_hand_computation() -> None:
    flops = training_flops_per_token(V3, SEQ)
    assert flops.matmul == 6 * N_ACT_NONEMB
    assert flops.total == pytest.approx(FLOPS_PER_TOKEN, rel=1e-12)
    assert 2.5e11 < FLOPS_PER_TOKEN < 2.7e11  # ≈ 6 × 37B plus attention and MTP
    bill = training_cost(TOKENS, flops.total, 989.5, gpu_hours=GPU_HOURS, price_per_gpu_hour=2)
    assert bill.dollars == pytest.approx(5.576e6)
    assert bill.mfu == pytest.approx(IMPLIED_MFU, rel=1e-12)
    assert 0.38 < IMPLIED_MFU < 0.40
    # Going the other way, that MFU gives back the published GPU-hours.
    back = training_cost(TOKENS, flops.total, 989.5, mfu=bill.mfu)
    assert back.gpu_hours == pytest.approx(GPU_HOURS) and back.mfu_given


def test_cli_reproduces_the_v3_bill(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["cost", "deepseek-v3", "--train-tokens", "14.8e12", "--gpu", "h800", "--gpu-hours", "2.788e6",
            "--price-per-gpu-hour", "2"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "$5.576M" in out
    assert f"implied MFU {IMPLIED_MFU:.1%}" in out
    assert "formula: 6·N_act_nonemb + 6·vocab·hidden + 6·heads·(qk_head_dim+v_head_dim)·(L+1)/2·layers" in out
    assert "70,272 B" in out and "4,997,120 B (71.1× latent)" in out


def test_v3_kv_cache_bytes_per_token() -> None:
    kv = kv_cache_bytes_per_token(V3)
    assert kv.latent == (KV_LORA + ROPE) * LAYERS * 2 == 70_272
    assert kv.full == HEADS * (NOPE + ROPE + VDIM) * LAYERS * 2 == 4_997_120
    assert kv.gqa8 == 8 * (NOPE + ROPE + VDIM) * LAYERS * 2 == 312_320
    assert round(kv.full_over_latent, 1) == 71.1
    # With fewer than 8 heads, "GQA-8" cannot cache more heads than the model has.
    tiny = ModelConfig.preset("tiny")
    assert kv_cache_bytes_per_token(tiny).gqa8 == kv_cache_bytes_per_token(tiny).full


def test_v3_decode_flops_and_cache_fit() -> None:
    d = decode_flops_per_token(V3, SEQ)
    assert d.weights == 2 * (N_ACT_NONEMB + V * H)
    assert d.attention_absorbed == 2 * HEADS * (2 * KV_LORA + ROPE) * SEQ * LAYERS
    assert d.attention_expanded == 2 * HEADS * (NOPE + ROPE + VDIM) * SEQ * LAYERS
    fit = cache_fit(V3, 80, "bf16")  # one H800: the bf16 weights alone need ~1.34 TB
    assert fit.tokens_in_memory["latent"] == 80_000_000_000 // 70_272
    assert fit.tokens_after_weights is None
    node = cache_fit(V3, 8 * 141, "fp8")  # an 8×H200 node with FP8 weights
    assert node.tokens_after_weights is not None
    assert node.tokens_after_weights["latent"] == int((1128e9 - node.weights_gb * 1e9) // 70_272)
    assert 6.5e6 < node.tokens_after_weights["latent"] < 6.6e6


def test_accelerator_table() -> None:
    for key in ("h800", "h100", "h200", "a100", "b200", "mi300x", "cpu"):
        assert accelerator(key).source
    assert accelerator("H800").peak_tflops("bf16") == 989.5
    assert accelerator("h800").peak_tflops("fp8") == 1979
    assert accelerator("h100").peak_tflops("bf16") == accelerator("h800").peak_tflops("bf16")
    with pytest.raises(ValueError, match="no published dense fp8"):
        accelerator("a100").peak_tflops("fp8")
    with pytest.raises(ValueError, match="no published dense bf16"):
        accelerator("cpu").peak_tflops("bf16")
    with pytest.raises(ValueError, match=r"unknown gpu='tpu9'.*h800, h100, h200, a100, b200, mi300x, cpu"):
        accelerator("tpu9")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tokens=-1.0, mfu=0.4), "tokens=-1.0"),
        (dict(tokens=1e9, mfu=1.5), "mfu=1.5"),
        (dict(tokens=1e9, mfu=0.0), "mfu=0.0"),
        (dict(tokens=1e9, mfu=-0.1), "mfu=-0.1"),
        (dict(tokens=1e9, mfu=0.4, gpu_hours=10.0), "expected exactly one of mfu"),
        (dict(tokens=1e9), "expected exactly one of mfu"),
        (dict(tokens=1e9, mfu=0.4, price_per_gpu_hour=-1.0), "price_per_gpu_hour=-1.0"),
        (dict(tokens=1e15, gpu_hours=1.0), "implies MFU"),
    ],
)
def test_training_cost_rejects_bad_inputs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        training_cost(flops_per_token=1e9, peak_tflops=989.5, **kwargs)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gpu", "tpu9", "--mfu", "0.4"], "unknown gpu='tpu9': expected one of h800, h100"),
        (["--gpu", "h800", "--mfu", "0.4", "--train-tokens", "-5"], "train_tokens=-5.0"),
        (["--gpu", "h800", "--mfu", "1.2"], "mfu=1.2"),
        (["--gpu", "h800", "--mfu", "0"], "mfu=0.0"),
        (["--gpu", "h800", "--mfu", "0.4", "--gpu-hours", "10"], "mfu=0.4, gpu_hours=10.0"),
        (["--gpu", "h800", "--mfu", "0.4", "--price-per-gpu-hour", "-2"], "price_per_gpu_hour=-2.0"),
        (["--gpu", "a100", "--precision", "fp8", "--mfu", "0.4"], "no published dense fp8"),
        (["--gpu", "h800", "--peak-tflops", "100", "--mfu", "0.4"], "not both"),
        (["--mfu", "0.4"], "expected --gpu NAME or --peak-tflops X"),
        (["--peak-tflops", "-3", "--mfu", "0.4"], "peak_tflops=-3.0"),
        (["--memory-gb", "0"], "memory_gb=0.0"),
        (["--seq-len", "0"], "seq_len=0"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["cost", "deepseek-v3", *extra]
    if "--train-tokens" not in extra:
        argv += ["--train-tokens", "1e12"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("tinyseek cost: error:")


def test_cli_mfu_needs_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "tiny", "--gpu", "h100", "--mfu", "0.4"]) == 2
    assert "expected --train-tokens N" in capsys.readouterr().err


# ---- measured runs -------------------------------------------------------------------------------
def _write_metrics(run: Path, lines: list[str]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_read_throughput_takes_the_last_line_per_key(tmp_path: Path) -> None:
    _write_metrics(tmp_path, [
        json.dumps({"step": 1, "train/tokens_per_s": 100.0, "loss": 3.0}),
        json.dumps({"step": 2, "train/tokens_per_s": 250.0, "lr": 1e-3}),
        json.dumps({"step": 2, "rollout/tokens_per_s": 900, "reward": 0.5}),
        json.dumps({"step": 3, "loss": 2.0}),
        '{"step": 4, "train/tokens_per_s": 1',  # killed mid-write: skipped
    ])  # fmt: skip
    found = {t.key: t for t in read_throughput(tmp_path)}
    assert set(found) == {"train/tokens_per_s", "rollout/tokens_per_s"}
    assert found["train/tokens_per_s"].tokens_per_s == 250.0
    assert found["train/tokens_per_s"].source.endswith("metrics.jsonl:2")
    assert found["rollout/tokens_per_s"].tokens_per_s == 900.0
    (tmp_path / "summary.json").write_text(json.dumps({"train/tokens_per_s": 300, "wall_s": 12}))
    assert {t.key: t.tokens_per_s for t in read_throughput(tmp_path)}["train/tokens_per_s"] == 300.0


def test_read_throughput_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_throughput(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither metrics.jsonl nor summary.json"):
        read_throughput(tmp_path)
    _write_metrics(tmp_path, [json.dumps({"loss": 1.0}), json.dumps({"tokens_per_s": "fast"})])
    with pytest.raises(ValueError, match=r"metrics\.jsonl: no throughput found.*tokens_per_s"):
        read_throughput(tmp_path)


def test_cost_per_million_tokens() -> None:
    assert cost_per_million_tokens(1000.0, 3.6) == pytest.approx(1.0)  # 3.6M tokens per hour at $3.60
    with pytest.raises(ValueError, match="price_per_gpu_hour=-1"):
        cost_per_million_tokens(1000.0, -1)


def test_cli_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"tokens_per_s": 17000, "note": "tiny on 2 cores"}))
    assert main(["cost", "--measured", str(tmp_path), "--price-per-gpu-hour", "0.10", "--json"]) == 0
    (m,) = json.loads(capsys.readouterr().out)["measured"]
    assert m["tokens_per_s"] == 17000
    assert m["dollars_per_million_tokens"] == pytest.approx(0.10 / (17000 * 3600) * 1e6)
    assert main(["cost", "--measured", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["cost"]) == 2
    assert "nothing to price" in capsys.readouterr().err


def test_cli_model_dir_and_list_gpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ModelConfig.preset("tiny").save_pretrained(tmp_path)
    assert main(["cost", str(tmp_path), "--json", "--seq-len", "256"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = training_flops_per_token(ModelConfig.preset("tiny"), 256).total
    assert report["training_flops_per_token"]["total"] == pytest.approx(expected)
    assert report["training"] is None and report["inference"]["cache_fit"] is None
    assert main(["cost", "--list-gpus"]) == 0
    out = capsys.readouterr().out
    assert "h800           989.5        1979" in out and "datasheet" in out


def test_subprocess_json() -> None:
    argv = [sys.executable, "-m", "tinyseek", "cost", "deepseek-v3", "--train-tokens", "14.8e12",
            "--gpu", "h800", "--gpu-hours", "2.788e6", "--price-per-gpu-hour", "2", "--json"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(done.stdout)
    assert report["training"]["dollars"] == pytest.approx(5.576e6)
    assert report["training"]["mfu"] == pytest.approx(IMPLIED_MFU, rel=1e-12)
    assert report["inference"]["kv_cache_bytes_per_token_bf16"]["latent"] == 70_272
    assert report["accelerator"]["key"] == "h800"


def test_what_if_preset_is_labelled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", "r2-hybrid"]) == 0
    assert "NOTE: what-if" in capsys.readouterr().out


# ---- decode roofline ------------------------------------------------------------------------------


def test_experts_touched_by_a_batch() -> None:
    from tinyseek.cost.roofline import experts_touched

    small = ModelConfig.preset("small")  # 16 routed experts, 4 a token
    assert experts_touched(small, 1) == pytest.approx(4)  # one token reaches exactly its top-k
    assert experts_touched(small, 2) == pytest.approx(16 * (1 - 0.75**2))
    assert experts_touched(small, 256) == pytest.approx(16)


def test_generation_bound_runs_the_head_once_a_sequence_in_the_prefill() -> None:
    """A prefill samples only at each prompt's last position: a larger vocabulary adds one head's FLOPs
    per sequence to it, not one per prompt token (which made the bound 1.7x too slow on `small`)."""
    from tinyseek.cost.roofline import generation_seconds

    base = ModelConfig.preset("small")
    wider = ModelConfig.preset("small", vocab_size=base.vocab_size + 1000)
    batch, prompt, peak = 32, 32, 1e11
    # new_tokens=1: the prefill alone; unbounded bandwidth: compute-bound
    extra = generation_seconds(wider, batch, prompt, 1, 1e30, peak) - generation_seconds(
        base, batch, prompt, 1, 1e30, peak
    )
    assert extra == pytest.approx(batch * 2 * 1000 * base.hidden_size / peak)


def test_serial_bound_adds_what_the_roofline_overlaps() -> None:
    from tinyseek.cost.roofline import decode_roofline

    step = decode_roofline(ModelConfig.preset("small"), 32, 48)
    bandwidth, peak = 10e9, 100e9
    memory, arithmetic = step.bytes / bandwidth, step.flops / peak
    assert step.seconds(bandwidth, peak) == pytest.approx(max(memory, arithmetic))
    assert step.serial_seconds(bandwidth, peak) == pytest.approx(memory + arithmetic)
    assert step.bound(bandwidth, peak) == "memory" and step.bound(1e15, peak) == "compute"
