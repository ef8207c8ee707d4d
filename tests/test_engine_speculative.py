"""MTP speculative decoding: the same tokens as plain decoding, with the acceptance rate reported."""

from __future__ import annotations

import torch

from tests.fixtures import bigram_drafted_model, random_model
from tinyseek import LLM, SamplingParams


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    lengths = (1, 3, 15, 16, 17, 30, 41, 150)  # 150: prefilled expanded, the MTP layer too
    return [torch.randint(1, 64, (n,), generator=gen).tolist() for n in lengths]


def test_speculative_greedy_equals_plain_with_mixed_acceptance():
    model = bigram_drafted_model()
    params = SamplingParams(temperature=0, max_tokens=30)
    plain = LLM(model, max_model_len=256).generate(_prompts(), params)
    spec_llm = LLM(model, max_model_len=256, speculative=True)
    spec = spec_llm.generate(_prompts(), params)
    assert [o.token_ids for o in spec] == [o.token_ids for o in plain]
    stats = spec_llm.stats
    assert 0.2 < stats.acceptance_rate < 0.9  # both the accept and the reject path ran
    per_output = sum(o.outputs[0].num_accepted_tokens for o in spec) / sum(
        o.outputs[0].num_draft_tokens for o in spec
    )
    assert per_output == stats.acceptance_rate
    # Accepted drafts save forwards: a sequence's decode forwards (one draft each) < its tokens after the first.
    assert sum(o.outputs[0].num_draft_tokens for o in spec) < sum(len(o.token_ids) - 1 for o in spec)


def test_speculative_seeded_sampling_equals_plain_in_a_mixed_batch():
    model = bigram_drafted_model()
    params = [
        SamplingParams(
            temperature=[0, 0.5, 1.0][i % 3], top_k=[0, 8][i % 2], seed=i, max_tokens=10 + 3 * i, logprobs=1
        )
        for i in range(len(_prompts()))
    ]
    plain = LLM(model, max_model_len=256).generate(_prompts(), params)
    spec_llm = LLM(model, max_model_len=256, speculative=True, max_num_seqs=3)
    spec = spec_llm.generate(_prompts(), params)
    for a, b in zip(plain, spec, strict=True):
        assert a.token_ids == b.token_ids
        assert a.logprobs is not None and b.logprobs is not None
        assert [sorted(e) for e in a.logprobs] == [sorted(e) for e in b.logprobs]
    assert spec_llm.stats.accepted_tokens > 0


def test_speculative_with_prefix_hits_and_random_drafts():
    model = random_model()
    shared = torch.randint(0, 64, (35,), generator=torch.Generator().manual_seed(3)).tolist()
    prompts = [shared + [1], shared + [2, 3]]
    params = SamplingParams(temperature=0, max_tokens=12)
    plain = LLM(model, max_model_len=256).generate(prompts, params)
    spec_llm = LLM(model, max_model_len=256, speculative=True)
    spec = [spec_llm.generate([p], params)[0] for p in prompts]
    assert [o.token_ids for o in spec] == [o.token_ids for o in plain]
    assert spec[1].prompt_cache_hit_tokens == 32
    assert spec_llm.stats.draft_tokens > 0
