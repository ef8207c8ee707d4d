"""The engine's greedy output equals transformers' `generate` on the same checkpoint."""

from __future__ import annotations

import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from tests.fixtures import ENGINE, tiny_config
from tinyseek import LLM, SamplingParams


def test_greedy_batch_equals_transformers_generate(tmp_path):
    cfg = tiny_config(**{**ENGINE, "num_nextn_predict_layers": 0})
    d = cfg.to_dict()
    for key in ("architectures", "model_type"):
        d.pop(key)
    torch.manual_seed(0)
    hf = DeepseekV3ForCausalLM(DeepseekV3Config(**d)).eval()
    with torch.no_grad():  # a non-zero correction bias changes which experts are selected
        for name, buf in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.uniform_(-0.3, 0.3)
    hf.save_pretrained(tmp_path)

    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=gen).tolist() for n in (1, 4, 9, 17, 33, 50)]
    new = 24
    llm = LLM(tmp_path, max_model_len=128)
    ours = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=new))
    for prompt, out in zip(prompts, ours, strict=True):
        ids = torch.tensor([prompt])  # one prompt at a time: no padding on the transformers side
        with torch.no_grad():
            ref = hf.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                do_sample=False,
                eos_token_id=None,
            )
        assert out.token_ids == ref[0, len(prompt) :].tolist(), f"prompt of {len(prompt)} tokens"
        assert out.finish_reason == "length"
