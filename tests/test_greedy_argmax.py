"""Greedy decoding's argmax kernel (tinyseek/inference/csrc/greedy_argmax.cpp): the same token as
at::max's first maximum for every row, ties, infinities and NaNs included, and the sampler of a
compiled CPU engine uses it."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference.sampler import Sampler

pytestmark = pytest.mark.usefixtures("cpu_kernels_built")


def first_maximum(logits: torch.Tensor) -> torch.Tensor:
    return logits.max(dim=-1).indices


@pytest.mark.parametrize("vocab", [1, 15, 16, 17, 47, 513, 10240, 32000])
def test_greedy_argmax_is_the_first_maximum(vocab: int):
    """Random rows, rows with ties (in one vector lane, across lanes, in the tail past the last whole
    vector), a row of -inf and rows read with a stride (a view of every other row)."""
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(6, vocab, generator=gen).round(decimals=1)  # rounding makes ties likely
    top = logits.max() + 1
    for row, places in ((0, [vocab - 1, 0]), (1, [vocab // 2, vocab // 2 + 16, 3]), (2, [vocab - 1])):
        for place in places:
            logits[row, min(place, vocab - 1)] = top
    logits[3] = float("-inf")
    for x in (logits, logits[::2]):
        assert torch.equal(torch.ops.tinyseek.greedy_argmax(x), first_maximum(x))


def test_greedy_argmax_takes_torch_for_nan_rows_and_other_layouts():
    """A row holding a NaN gets at::max's answer (the NaN's index); bf16 and a vocabulary read with a
    stride go to at::max whole; bad shapes are named."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 100, generator=gen)
    logits[1, 37] = float("nan")
    logits[2, 99] = float("nan")
    assert torch.equal(torch.ops.tinyseek.greedy_argmax(logits), first_maximum(logits))
    assert torch.ops.tinyseek.greedy_argmax(logits)[1:3].tolist() == [37, 99]
    for x in (logits.bfloat16(), logits[:, ::2]):
        assert torch.equal(torch.ops.tinyseek.greedy_argmax(x), first_maximum(x))
    with pytest.raises(RuntimeError, match=r"expected logits \[B, V\]"):
        torch.ops.tinyseek.greedy_argmax(logits[0])
    with pytest.raises(RuntimeError, match="non-empty vocabulary"):
        torch.ops.tinyseek.greedy_argmax(logits[:, :0])


def test_greedy_argmax_fake_kernel_matches_it():
    logits = torch.randn(3, 40)
    assert set(torch.library.opcheck(torch.ops.tinyseek.greedy_argmax.default, (logits,)).values()) == {
        "SUCCESS"
    }


def test_sampler_with_the_kernel_gives_the_same_tokens():
    """Greedy rows among sampled ones, seeded: the same tokens with the kernel as without."""
    logits = torch.randn(8, 300, generator=torch.Generator().manual_seed(3))
    params = [SamplingParams(temperature=0 if i % 3 else 0.8, seed=i) for i in range(8)]
    tokens = []
    for kernel in (False, True):
        sampler = Sampler(seed=1)
        sampler.cpu_argmax = kernel
        gens = [torch.Generator().manual_seed(i) for i in range(8)]
        tokens.append(sampler.sample(logits, params, gens))
    assert torch.equal(tokens[0], tokens[1])


def test_compiled_cpu_engine_samples_greedy_rows_with_the_kernel():
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("the CPU kernels run on AVX-512 only")
    llm = LLM(random_model(), compile=True, max_model_len=32)
    assert llm.engine.runner.sampler.cpu_argmax
    assert not LLM(random_model(), max_model_len=32).engine.runner.sampler.cpu_argmax
