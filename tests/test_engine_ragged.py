"""Mixed lengths cost what their tokens cost: prefill length buckets and ragged decode attention."""

from __future__ import annotations

import torch

from tests.fixtures import greedy_reference, random_model
from tinyseek import SamplingParams
from tinyseek.inference.engine import Engine
from tinyseek.inference.model_runner import length_buckets, ragged_groups


def test_buckets_and_groups_bound_the_padding():
    assert length_buckets([5, 100, 90, 4, 6]) == [[1, 2], [4, 0, 3]]
    assert ragged_groups([10, 10, 1, 1, 1, 1], waste=0.5) == [(slice(0, 3), 10), (slice(3, 6), 1)]
    assert ragged_groups([3, 3, 3]) == [(slice(0, 3), 3)]
    for waste in (0.1, 0.5):
        for spans in ([9, 8, 5, 5, 4, 2, 1, 1], [40, 1], [2] * 10):
            groups = ragged_groups(spans, waste)
            assert [i for group, _ in groups for i in range(len(spans))[group]] == list(range(len(spans)))
            for group, widest in groups:
                assert widest == max(spans[group])
                assert widest * len(spans[group]) <= (1 + waste) * sum(spans[group])


def test_short_and_long_contexts_decode_together_exactly():
    """Rows whose contexts differ tenfold decode in one step, in separate attention groups, and each
    equals its own full-forward greedy decoding."""
    model = random_model()
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 64, (n,), generator=gen).tolist() for n in (3, 100, 4, 90, 2)]
    engine = Engine(model, max_model_len=160, max_num_batched_tokens=512)
    params = SamplingParams(temperature=0, max_tokens=12)
    for p in prompts:
        engine.add_request(p, params)
    engine.step()  # the prefills, in two length buckets
    engine.step()  # the first decode step
    assert len(engine.cache.read_blocks) == 2
    done = {}
    while engine.has_unfinished():
        for delta in engine.step():
            if delta.request_output is not None:
                done[delta.request_id] = delta.request_output.token_ids
    assert [done[f"req-{i}"] for i in range(5)] == [greedy_reference(model, p, 12) for p in prompts]
