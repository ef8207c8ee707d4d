"""Checkpoint I/O: MTP round trip, sharding, FP8 dequantization, and clear errors on bad files."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from tests.fixtures import tiny_config
from tinyseek.model.hf_checkpoint import quantize_fp8
from tinyseek.model.transformer import Transformer


def test_round_trip_keeps_mtp_and_released_names(tmp_path):
    model = Transformer(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    names = set(load_file(tmp_path / "model.safetensors"))
    mtp = "model.layers.3"  # num_hidden_layers = 3, so MTP depth 0 is stored as layer 3
    for suffix in ("embed_tokens.weight", "enorm.weight", "hnorm.weight", "eh_proj.weight",
                   "shared_head.norm.weight", "shared_head.head.weight", "self_attn.kv_b_proj.weight",
                   "mlp.experts.7.down_proj.weight", "mlp.gate.e_score_correction_bias"):  # fmt: skip
        assert f"{mtp}.{suffix}" in names
    loaded = Transformer.from_pretrained(tmp_path)
    x = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        h, h2 = model.hidden_states(x), loaded.hidden_states(x)
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model.mtp_hidden_states(h, x)[0], loaded.mtp_hidden_states(h2, x)[0])
    assert json.loads((tmp_path / "generation_config.json").read_text())["temperature"] == 0.6


def test_sharded_save_loads_in_both(tmp_path):
    model = Transformer(tiny_config()).eval()
    model.save_pretrained(tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 3 and all((tmp_path / s).exists() for s in shards)
    assert not (tmp_path / "model.safetensors").exists()
    x = torch.randint(0, 96, (2, 10))
    with torch.no_grad():
        assert torch.equal(Transformer.from_pretrained(tmp_path)(x), model(x))
        hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
        assert (hf(x).logits - model(x)).abs().max() <= 1e-4


def test_checkpoint_without_mtp_loads_with_mtp_off(tmp_path, caplog):
    model = Transformer(tiny_config(num_nextn_predict_layers=0))
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["num_nextn_predict_layers"] = 1  # what transformers writes while saving no MTP tensors
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.WARNING):
        loaded = Transformer.from_pretrained(tmp_path)
    assert loaded.config.num_nextn_predict_layers == 0 and len(loaded.mtp) == 0
    assert "no MTP weights" in caplog.text


def test_fp8_block_checkpoint_matches_dequantized_reference(tmp_path):
    # hidden 160 and intermediate 320 span several 128x128 blocks, with ragged edges.
    cfg = tiny_config(
        hidden_size=160, intermediate_size=320, moe_intermediate_size=136, num_nextn_predict_layers=0
    )
    source = Transformer(cfg)
    source.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    reference = {}
    for name in list(tensors):
        w = tensors[name]
        if w.dim() == 2 and "proj" in name:  # linear weights are FP8 in the released checkpoint
            q, scale_inv = quantize_fp8(w)
            tensors[name], tensors[name + "_scale_inv"] = q, scale_inv
            deq = torch.empty_like(w)
            for bi in range(scale_inv.shape[0]):
                for bj in range(scale_inv.shape[1]):
                    rows, cols = slice(bi * 128, (bi + 1) * 128), slice(bj * 128, (bj + 1) * 128)
                    deq[rows, cols] = q[rows, cols].float() * scale_inv[bi, bj]
            reference[name] = deq
    assert any(t.dtype == torch.float8_e4m3fn for t in tensors.values())
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
                                     "activation_scheme": "dynamic"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded = Transformer.from_pretrained(tmp_path)
    got = loaded.hf_tensors()
    for name, deq in reference.items():
        assert torch.equal(got[name], deq), name
        assert (deq - load_file_original(source, name)).abs().max() < 0.1 * deq.abs().max() + 1e-6
    assert "quantization_config" not in loaded.config.to_dict()  # weights are now dequantized


def load_file_original(model: Transformer, name: str) -> torch.Tensor:
    return model.hf_tensors()[name].detach()


def _broken_checkpoint(tmp_path, edit):
    Transformer(tiny_config(num_nextn_predict_layers=0)).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    edit(tensors)
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})


def test_missing_tensor_is_named_with_expected_shape(tmp_path):
    _broken_checkpoint(tmp_path, lambda t: t.pop("model.layers.1.self_attn.o_proj.weight"))
    with pytest.raises(
        ValueError,
        match=r"missing tensor 'model.layers.1.self_attn.o_proj.weight' \(expected shape \[32, 16\]\)",
    ):
        Transformer.from_pretrained(tmp_path)


def test_wrong_shape_is_named(tmp_path):
    def edit(t):
        t["model.layers.0.mlp.up_proj.weight"] = torch.zeros(47, 32)

    _broken_checkpoint(tmp_path, edit)
    with pytest.raises(
        ValueError, match=r"'model.layers.0.mlp.up_proj.weight' has shape \[47, 32\]: expected \[48, 32\]"
    ):
        Transformer.from_pretrained(tmp_path)


def test_unexpected_tensor_is_named(tmp_path):
    def edit(t):
        t["model.layers.0.self_attn.q_bias"] = torch.zeros(3)

    _broken_checkpoint(tmp_path, edit)
    with pytest.raises(ValueError, match="unexpected tensor 'model.layers.0.self_attn.q_bias'"):
        Transformer.from_pretrained(tmp_path)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Transformer.from_pretrained(tmp_path / "nope")
    tiny_config().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        Transformer.from_pretrained(tmp_path)
