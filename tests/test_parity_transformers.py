"""tinyseek's model equals transformers' DeepseekV3/V2 on the same weights, in both directions."""

from __future__ import annotations

import pytest
import torch
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM

from tests.fixtures import YARN, tiny_config
from tinyseek.config import ModelConfig
from tinyseek.model.transformer import Transformer

TOL = 1e-4

V3_CASES = {
    "q_lora_null": dict(q_lora_rank=None),
    "groups_limited": dict(n_group=4, topk_group=2),
    "yarn": dict(rope_scaling=YARN, max_position_embeddings=128),
    "dense_first_two": dict(first_k_dense_replace=2, num_hidden_layers=4),
    "no_dense_layers": dict(first_k_dense_replace=0, n_group=2, topk_group=1, num_experts_per_tok=3),
    "tied_embeddings": dict(tie_word_embeddings=True),
}


def hf_v3(cfg: ModelConfig) -> DeepseekV3ForCausalLM:
    d = cfg.to_dict()
    d.pop("architectures")
    d.pop("model_type")
    d["num_mtp_layers"] = 0
    model = DeepseekV3ForCausalLM(DeepseekV3Config(**d)).eval()
    with torch.no_grad():  # a non-zero correction bias changes which experts are selected
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.uniform_(-0.3, 0.3)
    return model


def ids(batch: int = 3, length: int = 24, vocab: int = 96) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", sorted(V3_CASES))
def test_transformers_checkpoint_loads_with_equal_logits(case, tmp_path):
    cfg = tiny_config(num_nextn_predict_layers=0, **V3_CASES[case])
    hf = hf_v3(cfg)
    hf.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(tmp_path)
    x = ids()
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)).abs().max().item()
    assert diff <= TOL, f"{case}: max abs diff {diff}"


@pytest.mark.parametrize("case", sorted(V3_CASES))
def test_tinyseek_checkpoint_loads_in_transformers(case, tmp_path):
    cfg = tiny_config(**V3_CASES[case])  # with MTP: transformers must ignore those tensors
    ours = Transformer(cfg).eval()
    with torch.no_grad():
        for layer in ours.layers:
            if hasattr(layer.mlp, "gate") and layer.mlp.gate.e_score_correction_bias is not None:
                layer.mlp.gate.e_score_correction_bias.uniform_(-0.3, 0.3)
    ours.save_pretrained(tmp_path)
    hf = DeepseekV3ForCausalLM.from_pretrained(tmp_path).eval()
    x = ids()
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)).abs().max().item()
    assert diff <= TOL, f"{case}: max abs diff {diff}"


@pytest.mark.parametrize("topk_method", ["greedy", "group_limited_greedy"])
def test_softmax_routing_matches_deepseek_v2(topk_method, tmp_path):
    # transformers' V2 router never renormalizes top-k weights, so compare with norm_topk_prob=False.
    hf_cfg = DeepseekV2Config(
        vocab_size=96, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
        q_lora_rank=None, kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
        intermediate_size=48, moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=2,
        num_experts_per_tok=2, n_group=4, topk_group=2, topk_method=topk_method, first_k_dense_replace=1,
        norm_topk_prob=False, routed_scaling_factor=1.5, max_position_embeddings=128,
    )  # fmt: skip
    hf = DeepseekV2ForCausalLM(hf_cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(tmp_path)
    assert ours.config.scoring_func == "softmax" or ours.config.topk_method == topk_method
    x = ids()
    with torch.no_grad():
        diff = (hf(x).logits - ours(x)).abs().max().item()
    assert diff <= TOL, f"{topk_method}: max abs diff {diff}"


def test_deepseek_v2_config_is_read_as_softmax_routing(tmp_path):
    cfg = ModelConfig.from_dict(
        {"scoring_func": "softmax", "topk_method": "greedy", "n_group": None, "topk_group": None, **_small()}
    )
    assert cfg.n_group == 1 and cfg.topk_group == 1


def _small() -> dict:
    return dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, q_lora_rank=None,
                kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, intermediate_size=48,
                moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1)  # fmt: skip
