"""RMSNorm's fused kernel against the fp32 formula it replaced (and transformers uses): bitwise equal."""

from __future__ import annotations

import pytest
import torch

from tinyseek.model.norm import RMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 5, 48), (4, 1, 512), (64, 128), (2, 33, 7168)])
def test_rmsnorm_equals_fp32_formula(dtype, shape):
    torch.manual_seed(0)
    norm = RMSNorm(shape[-1], eps=1e-6).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(*shape) * 3).to(dtype)
    xf = x.float()
    ref = norm.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)
    assert torch.equal(norm(x), ref)
