"""The sampler's CPU fast paths against what they replace: top-p's sort (numpy over packed keys)
against torch's stable descending sort, top-p sampling through it, and the per-row uniforms."""

from __future__ import annotations

import pytest
import torch

from tinyseek.inference.sampler import Sampler, sort_descending
from tinyseek.inference.sampling_params import SamplingParams


@pytest.mark.parametrize("vocab", [1, 7, 512, 10_240])
def test_sort_descending_matches_torch_stable_sort_with_ties_zeros_and_nan(vocab: int) -> None:
    g = torch.Generator().manual_seed(vocab)
    probs = torch.randn(6, vocab, generator=g).softmax(-1)
    probs[1] = (probs[1] * 8).round() / 8  # many equal values: their order is by index
    probs[2, : vocab // 2] = 0.0
    probs[3, vocab // 3] = float("nan")
    probs[4] = 1.0 / vocab  # all equal
    probs[5, -1] = float("inf")
    with torch.inference_mode():
        got = sort_descending(probs)
    want = probs.sort(dim=-1, descending=True, stable=True)
    assert torch.equal(got[1], want.indices)
    assert torch.equal(got[0].nan_to_num(), want.values.nan_to_num())


def test_sort_descending_keeps_torch_sort_off_the_cpu_fast_path_for_other_dtypes() -> None:
    probs = torch.tensor([[0.25, 0.5, 0.25]], dtype=torch.float64)
    values, order = sort_descending(probs)
    assert order.tolist() == [[1, 0, 2]] and values.dtype == torch.float64


def test_top_p_samples_only_the_nucleus() -> None:
    # mass ahead of each word, largest first: 0, 0.5, 0.8, 0.95 -> top_p 0.8 keeps words 2 and 0
    logits = torch.tensor([[0.3, 0.05, 0.5, 0.15]]).log().expand(400, -1).contiguous()
    params = [SamplingParams(temperature=1.0, top_p=0.8, seed=i) for i in range(400)]
    generators = [torch.Generator().manual_seed(i) for i in range(400)]
    with torch.inference_mode():
        tokens = Sampler().sample(logits, params, generators)
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[1] == 0 and counts[3] == 0, counts
    assert 0.2 < counts[0] / 400 < 0.5 and counts[0] + counts[2] == 400  # 0.3 / 0.8 = 0.375 expected


def test_uniforms_come_from_each_rows_generator_else_the_shared_one_in_order() -> None:
    sampler = Sampler(seed=3)
    generators = [torch.Generator().manual_seed(i) if i % 3 else None for i in range(10)]
    got = sampler._uniforms(generators, torch.device("cpu"))
    shared = torch.rand(10, generator=torch.Generator().manual_seed(3))
    want = [
        shared[i] if i % 3 == 0 else torch.rand((), generator=torch.Generator().manual_seed(i))
        for i in range(10)
    ]
    assert got.dtype == torch.float32 and torch.equal(got, torch.stack(want))
    assert not torch.equal(sampler._uniforms(generators, torch.device("cpu")), got)  # the streams moved on
