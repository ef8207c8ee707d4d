"""ModelConfig: HF field names in and out, unknown keys kept, impossible values rejected by name."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import tiny_config
from tinyseek.config import ModelConfig, load_config
from tinyseek.model.transformer import Transformer
from tinyseek.model_size import ModelSize
from tinyseek.presets import PRESETS


def test_round_trip_keeps_unknown_keys(tmp_path):
    cfg = tiny_config()
    cfg.extra["my_custom_field"] = {"a": 1}
    cfg.save_pretrained(tmp_path)
    again = ModelConfig.from_pretrained(tmp_path)
    assert again == cfg and again.extra["my_custom_field"] == {"a": 1}
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["model_type"] == "deepseek_v3" and raw["num_key_value_heads"] == cfg.num_attention_heads


def test_reads_transformers5_rope_parameters():
    raw = {"rope_parameters": {"rope_type": "yarn", "rope_theta": 50000.0, "factor": 40.0,
                               "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 1.0}}  # fmt: skip
    cfg = ModelConfig.from_dict(raw)
    assert (
        cfg.rope_theta == 50000.0
        and cfg.rope_scaling["type"] == "yarn"
        and cfg.rope_scaling["factor"] == 40.0
    )
    plain = ModelConfig.from_dict({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})
    assert plain.rope_scaling is None and plain.rope_theta == 1e6


def test_yarn_softmax_scale_has_mscale_squared():
    cfg = ModelConfig.preset("deepseek-v3")
    mscale = 0.1 * 1.0 * __import__("math").log(40) + 1.0
    assert cfg.softmax_scale == pytest.approx(192**-0.5 * mscale**2)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_group": 3}, "n_group"),
        ({"topk_group": 5}, "topk_group"),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok"),
        ({"topk_method": "random"}, "topk_method"),
        ({"scoring_func": "relu"}, "scoring_func"),
        ({"qk_rope_head_dim": 5}, "qk_rope_head_dim"),
        ({"first_k_dense_replace": 9}, "first_k_dense_replace"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"rope_scaling": {"type": "ntk", "factor": 2}}, "rope_scaling"),
        ({"moe_layer_freq": 0}, "moe_layer_freq"),
        ({"topk_method": "noaux_tc", "scoring_func": "softmax"}, "scoring_func"),
    ],
)
def test_impossible_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**changes)


def test_bad_json_is_reported(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("no-such-preset")


def test_deepseek_v3_sizes_match_the_report():
    size = ModelSize(ModelConfig.preset("deepseek-v3"))
    assert size.total == pytest.approx(671.0e9, rel=0.002)
    assert size.activated == pytest.approx(37.5e9, rel=0.01)
    assert size.mtp == pytest.approx(11.6e9, rel=0.01)
    assert size.latent_cache_bytes_per_token(2) == 70_272
    assert size.full_kv_bytes_per_token(2) / size.latent_cache_bytes_per_token(2) == pytest.approx(
        71.1, abs=0.05
    )


@pytest.mark.parametrize("preset", ["tiny", "deepseek-v2-lite-shrunk", "r2-hybrid-shrunk"])
def test_size_arithmetic_equals_instantiated_model(preset):
    """ModelSize counts what the model holds (checked on shrunken copies of the big presets)."""
    name = preset.removesuffix("-shrunk")
    shrink = dict(hidden_size=64, num_hidden_layers=5, vocab_size=100, intermediate_size=96,
                  moe_intermediate_size=16, num_attention_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                  qk_rope_head_dim=4, v_head_dim=8)  # fmt: skip
    if name == "r2-hybrid":
        shrink.update(q_lora_rank=32, n_routed_experts=16)
    cfg = ModelConfig.preset(name, **(shrink if preset.endswith("shrunk") else {}))
    model = Transformer(cfg)
    size = ModelSize(cfg)
    assert model.num_parameters() == size.total + size.mtp


def test_presets_are_valid_and_labelled():
    for name in PRESETS:
        ModelConfig.preset(name)
    assert "what-if" in ModelConfig.preset("r2-hybrid").extra["tinyseek_note"]
    small = ModelSize(ModelConfig.preset("small")).total
    assert 50e6 <= small <= 100e6
