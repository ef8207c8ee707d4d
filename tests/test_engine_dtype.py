"""dtype="auto": bf16 only where the CPU computes it natively and it measured faster; fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference.auto_dtype import cpu_has_native_bf16, pick_dtype


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu sse2 avx avx2 avx512f amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(amx)
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_auto_loads_a_dtype_that_decodes(tmp_path):
    random_model().save_pretrained(tmp_path)
    llm = LLM(tmp_path, dtype="auto", max_model_len=64)
    dtype = next(llm.engine.model.parameters()).dtype
    assert dtype in (torch.float32, torch.bfloat16)
    if not cpu_has_native_bf16():
        assert dtype == torch.float32
    assert llm.engine.model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32
    out = llm.generate([[1, 2, 3]], SamplingParams(temperature=0, max_tokens=4))[0]
    assert len(out.token_ids) == 4
    assert pick_dtype(random_model(), batch=2) in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="dtype"):
        LLM(tmp_path, dtype="half")
