"""RMSNorm, computed in fp32 whatever the activation dtype (as the reference implementations do).

`F.rms_norm` does the normalization in one kernel instead of five (pow, mean, add, rsqrt, mul) with
bitwise the same fp32 result; at decode sizes each op's dispatch costs more than its arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)
