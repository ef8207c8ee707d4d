"""Engine behaviour: batching, caching, memory budget, sampling, streaming, validation."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import CharTokenizer, greedy_reference, random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference.engine import Engine


def prompts_of(lengths: list[int], seed: int = 1, vocab: int = 64) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def test_greedy_prompts_of_different_lengths_equal_full_forward_decoding():
    model = random_model()
    prompts = prompts_of([1, 5, 16, 17, 40, 150])  # 150: prefilled expanded (model_runner.py)
    outs = LLM(model, max_model_len=256).generate(prompts, SamplingParams(temperature=0, max_tokens=20))
    for prompt, out in zip(prompts, outs, strict=True):
        assert out.token_ids == greedy_reference(model, prompt, 20)


@torch.no_grad()
def test_long_prompts_prefill_expanded_whatever_shares_their_step():
    """A prompt of 128 tokens or more from position 0 is prefilled expanded, exactly as the cache-less
    forward computes it (bit for bit: the absorbed path agrees only to rounding), alone or beside short
    prompts and a prompt that continues a cached prefix; a 127-token prompt keeps the absorbed path."""
    model = random_model()
    long, short = prompts_of([160, 127], seed=3)
    first = SamplingParams(temperature=0, max_tokens=1, logprobs=3)

    def forward_logprobs(prompt: list[int]) -> dict[int, float]:
        hidden = model.hidden_states(torch.tensor([prompt]))[:, -1]
        logp = model.lm_head(hidden).float().log_softmax(dim=-1)[0]
        top = logp.topk(3)
        return dict(zip(top.indices.tolist(), top.values.tolist(), strict=True))

    llm = LLM(model, max_model_len=256)
    alone = llm.generate([long, short], first)
    assert alone[0].logprobs[0] == forward_logprobs(long)
    assert alone[1].logprobs[0] != forward_logprobs(short)  # absorbed: equal to rounding only
    assert alone[1].logprobs[0] == pytest.approx(forward_logprobs(short), abs=1e-5)
    llm = LLM(model, max_model_len=256)  # `long` not cached yet
    base, rest = prompts_of([150, 140], seed=4)
    llm.generate([base], first)
    cached = base[:64] + rest  # continues base's cached first 64 tokens: a chunk as long as `long`
    together = llm.generate([cached, *prompts_of([3, 30], seed=5), long], first)
    assert together[0].prompt_cache_hit_tokens == 64 and together[-1].prompt_cache_hit_tokens == 0
    assert together[-1].logprobs[0] == forward_logprobs(long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("speculative", [False, True])
def test_allocated_latent_cache_bytes_per_token(dtype, speculative):
    model = random_model().to(dtype)
    cfg = model.config
    engine = Engine(model, max_cache_tokens=160, speculative=speculative)
    layers = cfg.num_hidden_layers + (1 if speculative else 0)  # the MTP layer caches its latents too
    per_token = (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * layers * (4 if dtype == torch.float32 else 2)
    slots = (160 // 16 + 1) * 16  # 10 blocks + the padding sink
    assert engine.cache.bytes_per_token == per_token
    assert engine.cache.kv.nbytes + engine.cache.pe.nbytes == per_token * slots


def _mixed_params(i: int) -> SamplingParams:
    kinds = [
        dict(temperature=0),
        dict(temperature=1.0, seed=i),
        dict(temperature=0.7, top_p=0.8, seed=i),
        dict(temperature=1.3, top_k=5, seed=i),
        dict(temperature=1.0, min_p=0.2, seed=i),
        dict(temperature=0.9, top_k=10, top_p=0.9, min_p=0.05, seed=i, logprobs=2),
    ]
    return SamplingParams(max_tokens=4 + (i * 7) % 19, **kinds[i % len(kinds)])  # type: ignore[arg-type]


def test_32_requests_together_equal_each_alone():
    model = random_model()
    prompts = prompts_of([1 + (i * 11) % 45 for i in range(32)], seed=2)
    params = [_mixed_params(i) for i in range(32)]
    # A small batch and cache: requests wait, join as others leave, and share steps with strangers.
    together = LLM(model, max_model_len=128, max_num_seqs=12, max_cache_tokens=640).generate(prompts, params)
    alone_llm = LLM(model, max_model_len=128, enable_prefix_caching=False)
    for prompt, p, out in zip(prompts, params, together, strict=True):
        alone = alone_llm.generate([prompt], p)[0]
        assert out.token_ids == alone.token_ids
        assert out.finish_reason == "length"
        if p.logprobs is not None:
            assert out.logprobs is not None and alone.logprobs is not None
            for got, want in zip(out.logprobs, alone.logprobs, strict=True):
                assert got.keys() == want.keys()
                assert all(abs(got[k] - want[k]) < 1e-4 for k in got)


def test_requests_joining_mid_generation_equal_each_alone():
    model = random_model()
    engine = Engine(model, max_model_len=128, max_num_seqs=4)
    prompts = prompts_of([3, 20, 7, 33, 12, 5], seed=3)
    params = [SamplingParams(temperature=0.8, seed=10 + i, max_tokens=10 + i) for i in range(6)]
    outputs: dict[str, list[int]] = {}
    ids = [engine.add_request(prompts[0], params[0])]
    pending = list(range(1, 6))
    while engine.has_unfinished() or pending:
        if pending:  # one new request per step, while the others are mid-generation
            i = pending.pop(0)
            ids.append(engine.add_request(prompts[i], params[i]))
        for delta in engine.step():
            if delta.request_output is not None:
                outputs[delta.request_id] = delta.request_output.token_ids
    alone = LLM(model, max_model_len=128)
    for rid, prompt, p in zip(ids, prompts, params, strict=True):
        assert outputs[rid] == alone.generate([prompt], p)[0].token_ids


@pytest.mark.parametrize("speculative", [False, True])
def test_prompts_longer_than_the_token_budget_prefill_in_chunks(speculative):
    model = random_model()
    prompts = prompts_of([45, 3, 30], seed=8)
    llm = LLM(model, max_model_len=128, max_num_batched_tokens=16, speculative=speculative)
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6))
    assert [o.token_ids for o in outs] == [greedy_reference(model, p, 6) for p in prompts]
    assert llm.stats.prompt_tokens_computed == 45 + 3 + 30


def test_seeded_sampling_is_reproducible_and_seeds_differ():
    llm = LLM(random_model(), max_model_len=128)
    prompt = prompts_of([6])[0]
    a = llm.generate([prompt], SamplingParams(temperature=1.0, seed=7, max_tokens=16, n=3))[0]
    b = llm.generate([prompt], SamplingParams(temperature=1.0, seed=7, max_tokens=16, n=3))[0]
    assert [o.token_ids for o in a.outputs] == [o.token_ids for o in b.outputs]
    assert len({tuple(o.token_ids) for o in a.outputs}) == 3  # completion i uses seed + i


def test_prefix_cache_reports_hits_and_keeps_outputs():
    model = random_model()
    shared = prompts_of([40], seed=4)[0]
    first, second = shared + [1, 2, 3], shared + [4, 5]
    params = SamplingParams(temperature=0, max_tokens=8)
    llm = LLM(model, max_model_len=128)
    out1 = llm.generate([first], params)[0]
    out2 = llm.generate([second], params)[0]
    assert (out1.prompt_cache_hit_tokens, out1.prompt_cache_miss_tokens) == (0, 43)
    assert (out2.prompt_cache_hit_tokens, out2.prompt_cache_miss_tokens) == (32, 10)  # two full blocks
    assert out2.token_ids == greedy_reference(model, second, 8)
    # n samples of one prompt: the prompt is computed once, the other samples hit the cache.
    group = llm.generate(
        [prompts_of([37], seed=5)[0]], SamplingParams(temperature=1, seed=0, n=4, max_tokens=4)
    )
    assert group[0].prompt_cache_miss_tokens == 37
    assert llm.stats.prompt_cache_hit_tokens == 32 + 3 * 32


def test_memory_budget_makes_requests_wait_and_rejects_what_never_fits():
    model = random_model()
    engine = Engine(model, max_model_len=128, max_cache_tokens=64)  # 4 blocks of 16 tokens
    params = SamplingParams(temperature=0, max_tokens=10)
    prompts = prompts_of([20] * 5, seed=6)  # each needs 30 tokens = 2 blocks
    for p in prompts:
        engine.add_request(p, params)
    most_running, done = 0, {}
    while engine.has_unfinished():
        for delta in engine.step():
            if delta.request_output is not None:
                done[delta.request_id] = delta.request_output.token_ids
        most_running = max(most_running, len(engine.scheduler.running))
    assert most_running == 2
    assert [done[f"req-{i}"] for i in range(5)] == [greedy_reference(model, p, 10) for p in prompts]
    with pytest.raises(ValueError, match="max_tokens"):
        engine.add_request(prompts[0], SamplingParams(max_tokens=60))


def test_abort_frees_the_cache_and_closing_a_stream_aborts():
    engine = Engine(random_model(), max_model_len=128, max_cache_tokens=256)
    free = engine.block_manager.num_available()
    rid = engine.add_request(prompts_of([30])[0], SamplingParams(temperature=0, max_tokens=50))
    engine.step()
    engine.step()
    assert engine.block_manager.num_available() < free
    assert engine.abort(rid) and not engine.abort(rid)
    assert engine.block_manager.num_available() == free and not engine.has_unfinished()
    stream = engine.stream(prompts_of([5])[0], SamplingParams(temperature=0, max_tokens=50))
    next(stream)
    stream.close()
    assert engine.block_manager.num_available() == free and not engine.has_unfinished()


def test_stop_token_ids_eos_and_logprobs():
    model = random_model()
    prompt = prompts_of([8])[0]
    ref = greedy_reference(model, prompt, 12)
    llm = LLM(model, max_model_len=128, eos_token_ids=[ref[5]])
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=12, logprobs=3))[0]
    stop_at = ref.index(ref[5])
    assert out.token_ids == ref[: stop_at + 1] and out.finish_reason == "stop"
    ignoring = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    assert ignoring.token_ids == ref and ignoring.finish_reason == "length"
    by_id = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[ref[2]]))[0]
    assert by_id.token_ids == ref[: ref.index(ref[2]) + 1]
    with torch.no_grad():
        full = model(torch.tensor([prompt + out.token_ids])).log_softmax(-1)[0, len(prompt) - 1 : -1]
    assert out.logprobs is not None
    for row, token, entry in zip(full, out.token_ids, out.logprobs, strict=True):
        top = row.topk(3).indices.tolist()
        assert set(entry) == {token, *top}
        assert all(abs(entry[t] - row[t].item()) < 1e-4 for t in entry)


def test_text_prompts_stop_strings_streaming_and_chat():
    tok = CharTokenizer("abcdefghij:;ua ")
    model = random_model(vocab_size=len(tok.chars))
    llm = LLM(model, tokenizer=tok, max_model_len=128)
    full = llm.generate("abc", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0]
    assert full.text == tok.decode(full.token_ids)
    stop = full.text[6:8]
    cut = llm.generate("abc", SamplingParams(temperature=0, max_tokens=30, stop=stop, ignore_eos=True))[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(stop)]
    deltas = list(llm.stream("abc", SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)))
    assert "".join(d.text for d in deltas) == full.text
    assert [t for d in deltas for t in d.token_ids] == full.token_ids
    assert deltas[-1].request_output is not None and deltas[-1].finish_reason == "length"
    chat = llm.chat([{"role": "user", "content": "abc"}], SamplingParams(temperature=0, max_tokens=5))[0]
    assert chat.prompt_token_ids == tok.encode("u:abc;a:")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(temperature=-0.1), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(min_p=1.5), "min_p"),
        (dict(n=0), "n"),
        (dict(logprobs=-1), "logprobs"),
        (dict(seed=1.5), "seed"),
        (dict(stop=[""]), "stop"),
        (dict(stop_token_ids=[-1]), "stop_token_ids"),
    ],
)
def test_bad_sampling_params_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"SamplingParams\.{name}="):
        SamplingParams(**kwargs)


def test_bad_requests_name_the_problem():
    llm = LLM(random_model(), max_model_len=32)
    with pytest.raises(ValueError, match="prompt.*max_model_len=32"):
        llm.generate([list(range(32))])
    with pytest.raises(ValueError, match="prompt"):
        llm.generate([[]])
    with pytest.raises(ValueError, match="prompt"):
        llm.generate([[1, 2, 999]])
    with pytest.raises(ValueError, match="tokenizer"):
        llm.generate("text without a tokenizer")
    with pytest.raises(ValueError, match="stop"):
        llm.generate([[1, 2]], SamplingParams(stop="x"))
    with pytest.raises(ValueError, match="max_model_len"):
        Engine(random_model(), max_model_len=10_000)
    with pytest.raises(ValueError, match="speculative"):
        Engine(random_model(num_nextn_predict_layers=0), speculative=True)
    assert not llm.engine.has_unfinished()


def test_generation_stops_at_the_end_of_the_context():
    llm = LLM(random_model(), max_model_len=24)
    out = llm.generate([prompts_of([20])[0]], SamplingParams(temperature=0, max_tokens=50))[0]
    assert len(out.token_ids) == 4 and out.finish_reason == "length"


def test_changed_weights_empty_the_prefix_cache():
    model = random_model()
    prompt = prompts_of([40], seed=9)[0]
    llm = LLM(model, max_model_len=128)
    params = SamplingParams(temperature=0, max_tokens=6)
    llm.generate([prompt], params)
    with torch.no_grad():  # what an optimizer step does to a policy shared with the engine
        for p in model.layers[0].parameters():
            p.add_(0.5 * torch.randn_like(p))
    again = llm.generate([prompt], params)[0]
    assert again.prompt_cache_hit_tokens == 0
    assert again.token_ids == greedy_reference(model, prompt, 6)
    assert llm.generate([prompt], params)[0].prompt_cache_hit_tokens == 32
