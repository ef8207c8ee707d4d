"""Engine(compile=True): the decode forward under torch.compile gives the eager engine's tokens, and
the cache ops it compiles around (tinyseek/inference/latent_cache.py) equal the eager write and read."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import random_model
from tinyseek import LLM, SamplingParams
from tinyseek.inference.latent_cache import LatentCache
from tinyseek.model.attention import attend_cached, latent_attention


def prompts_of(lengths: list[int], seed: int = 1, vocab: int = 64) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def bound_caches(groups: list[tuple[slice, int]]) -> dict:
    """Two caches of equal contents bound for one decode step of 3 rows (contexts 41, 10 and 6 in
    scattered blocks): `eager` through `bind`'s list, `ops` through the packed tables the compiled
    decode reads; the step's q, kv, pe, positions, and the eager cache's attention over it."""
    config = random_model().config
    rank, width, heads = config.kv_lora_rank, config.latent_dim, 3
    gen = torch.Generator().manual_seed(0)
    eager, ops = (LatentCache(config, num_blocks=12, n_layers=2) for _ in range(2))
    for cache in (eager, ops):  # the same contents: a cached value read back, never the zeros
        cache.latents.copy_(torch.randn(cache.latents.shape, generator=gen.manual_seed(1)))
    table = torch.tensor([[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    positions = torch.tensor([[40], [9], [5]])
    slots = table[torch.arange(3), positions[:, 0] // 16] * 16 + positions[:, 0] % 16
    kv, pe = torch.randn(3, 1, rank, generator=gen), torch.randn(3, 1, width - rank, generator=gen)
    q = torch.randn(3, heads, width, generator=gen)
    eager.bind(slots, [(g, table[g, :w]) for g, w in groups])
    ops.bind(slots, [])
    ops.bind_tables(table, groups)
    expected = latent_attention(eager.layer(1), q, kv, pe, positions, 0.3)
    new = torch.cat([kv, pe], dim=-1)
    return dict(eager=eager, ops=ops, q=q, kv=kv, pe=pe, new=new, positions=positions, rank=rank,
                expected=expected)  # fmt: skip


def test_cache_ops_equal_the_eager_write_gather_and_attention():
    """Both ops write the same pool and return what LayerSlots.update + latent_attention return, for
    one group (write_gather) and ragged groups (write_attend)."""
    for groups in ([(slice(0, 3), 3)], [(slice(0, 1), 3), (slice(1, 3), 1)]):
        b = bound_caches(groups)
        eager, ops, q, positions, rank = b["eager"], b["ops"], b["q"], b["positions"], b["rank"]
        args = (ops.latents, 1, ops.write_slots, b["new"], ops.reads, ops.block_size)
        if len(groups) == 1:
            gathered = torch.ops.tinyseek.write_gather(*args)
            assert torch.equal(gathered, eager.layer(1).update(b["kv"], b["pe"], positions)[0][1])
            got = attend_cached(q, gathered, positions, 0.3, rank)
        else:
            got = torch.ops.tinyseek.write_attend(*args, q, positions, 0.3, rank)
        assert torch.equal(got, b["expected"])
        assert torch.equal(ops.latents, eager.latents)


def test_cache_ops_fake_kernels_match_them(cpu_kernels_built):
    """A compiled engine runs without inductor's per-call size asserts (model_runner.py), so the fake
    kernels of the ops it compiles around must give their real outputs' shapes and strides:
    torch.library.opcheck checks that, the schemas (the pool written in place) and AOT dispatch."""
    for groups in ([(slice(0, 3), 3)], [(slice(0, 1), 3), (slice(1, 3), 1)]):
        b = bound_caches(groups)
        ops = b["ops"]
        args = (ops.latents, 1, ops.write_slots, b["new"], ops.reads, ops.block_size)
        attend = (*args, b["q"], b["positions"], 0.3, b["rank"])
        checks = [
            (torch.ops.tinyseek.write_attend.default, attend),
            (torch.ops.tinyseek.write_latents.default, (ops.latents, 1, ops.write_slots, b["new"])),
        ]
        if len(groups) == 1:
            table = ops.reads[1 + 3 * len(groups) :].view(3, -1)
            checks += [
                (torch.ops.tinyseek.write_gather.default, args),
                (torch.ops.tinyseek.write_attend_paged.default, attend),
                (torch.ops.tinyseek.paged_latent_attention.default,
                 (b["q"], ops.latents[1], table, b["positions"], ops.block_size, 0.3, b["rank"])),
            ]  # fmt: skip
        for op, op_args in checks:
            assert set(torch.library.opcheck(op, op_args).values()) == {"SUCCESS"}, op


@pytest.mark.parametrize(  # one query token per row (decode) or two (verify); rows split over 2 threads
    "dtype, steps, threads, width, rank, heads",
    [
        (torch.float32, 1, 1, 45, 30, 3),
        (torch.float32, 2, 2, 45, 30, 3),
        (torch.float32, 1, 1, 48, 32, 3),  # whole vectors: fp32 latents read in place in the pool
        (torch.bfloat16, 1, 2, 45, 30, 3),
        (torch.bfloat16, 2, 1, 45, 30, 3),
        # The weighted sum's blocks of queries x vectors: 17 queries of 1 vector (16 + 1), 6 of 6
        # (2 + 2 + 2), 2 x 5 of 9 (8 vectors in blocks of 2 queries, then 1 vector: 8 + 2).
        (torch.float32, 1, 1, 20, 16, 17),
        (torch.float32, 1, 2, 112, 96, 6),
        (torch.float32, 2, 1, 160, 144, 5),
    ],
)
def test_paged_kernel_equals_gathering_then_attending(
    cpu_kernels_built, dtype: torch.dtype, steps: int, threads: int, width: int, rank: int, heads: int
):
    """Rows of contexts 1 to 70 slots in scattered blocks, widths that are not whole vectors (45 and
    30 of the kernel's 16-float vectors) and that are (48 and 32): the kernel's result equals gathering
    the blocks and attend_cached's, to rounding; the other rows' blocks and the slots past a row's
    position are never read (they hold NaN)."""
    gen = torch.Generator().manual_seed(0)
    rows, block = 5, 16
    pool = torch.full((40 * block, width), float("nan"))
    table = torch.randperm(39, generator=gen)[: rows * 5].view(rows, 5) + 1
    last = torch.tensor([0, 69, 15, 16, 40])  # each row's last query position
    positions = last[:, None] - torch.arange(steps - 1, -1, -1).clamp(max=last[:, None])
    for r in range(rows):  # only the slots each row may see hold numbers
        slots = table[r, torch.arange(last[r] + 1) // block] * block + torch.arange(last[r] + 1) % block
        pool[slots] = torch.randn(len(slots), width, generator=gen)
    pool = pool.to(dtype)
    q = torch.randn(rows, steps * heads, width, generator=gen).to(dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = torch.ops.tinyseek.paged_latent_attention(q, pool, table, positions, block, 0.3, rank)
    finally:
        torch.set_num_threads(before)
    blocks = pool.view(-1, block, width)
    expected = torch.stack([
        attend_cached(q[r : r + 1], blocks[table[r]].reshape(1, -1, width).nan_to_num(0.0),
                      positions[r : r + 1], 0.3, rank)[0]
        for r in range(rows)
    ])  # fmt: skip
    assert got.dtype == dtype and got.shape == (rows, steps * heads, rank)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


def test_paged_kernel_copies_fp32_rows_that_are_not_whole_vectors_apart(cpu_kernels_built):
    """fp32 latents are read in place when the pool's rows lie whole 16-float vectors apart (the
    engine's pool); rows 50 floats apart (a view of a wider pool) are copied first: same result."""
    gen = torch.Generator().manual_seed(0)
    block, width, rank = 16, 48, 32
    wide = torch.randn(8 * block, 50, generator=gen)
    strided, packed = wide[:, :width], wide[:, :width].contiguous()
    table, positions = torch.tensor([[3, 1, 6], [0, 7, 2]]), torch.tensor([[40], [33]])
    q = torch.randn(2, 4, width, generator=gen)
    attend = torch.ops.tinyseek.paged_latent_attention
    got = attend(q, strided, table, positions, block, 0.3, rank)
    torch.testing.assert_close(
        got, attend(q, packed, table, positions, block, 0.3, rank), atol=1e-6, rtol=1e-6
    )


def test_paged_kernel_rejects_a_block_outside_the_pool(cpu_kernels_built):
    pool, q = torch.zeros(4 * 16, 8), torch.zeros(1, 2, 8)
    with pytest.raises(RuntimeError, match=r"block ids must lie in \[0, 4\)"):
        torch.ops.tinyseek.paged_latent_attention(
            q, pool, torch.tensor([[4]]), torch.tensor([[3]]), 16, 1.0, 4
        )


def test_paged_ops_reject_offsets_outside_the_pool(cpu_kernels_built):
    """Block ids, positions and write slots are offsets into memory: each is checked before use."""
    pool, q = torch.zeros(4 * 16, 8), torch.zeros(1, 2, 8)
    attend = torch.ops.tinyseek.paged_latent_attention
    with pytest.raises(RuntimeError, match=r"block ids must lie in \[0, 4\)"):
        attend(q, pool, torch.tensor([[-1]]), torch.tensor([[3]]), 16, 1.0, 4)
    with pytest.raises(RuntimeError, match="positions must be >= 0"):
        attend(q, pool, torch.tensor([[1]]), torch.tensor([[-2]]), 16, 1.0, 4)
    latents, reads = torch.zeros(2, 4 * 16, 8), torch.tensor([1, 0, 1, 1, 2])

    def write(slot: int, reads: torch.Tensor) -> None:
        new, positions = torch.ones(1, 1, 8), torch.tensor([[3]])
        torch.ops.tinyseek.write_attend_paged(
            latents, 1, torch.tensor([slot]), new, reads, 16, q, positions, 1.0, 4
        )

    for slot in (64, -1):
        with pytest.raises(RuntimeError, match=r"slots must lie in \[0, 64\)"):
            write(slot, reads)
    with pytest.raises(RuntimeError, match="reads must be a non-empty"):  # an engine that never bound
        write(0, reads[:0])
    assert not latents.any()  # nothing written


def test_write_attend_paged_writes_the_pool_and_attends_like_the_eager_cache(cpu_kernels_built):
    """The op the compiled decode calls: the pool after it equals the eager write's, and its
    attention equals latent_attention over the eager cache, ragged groups included."""
    b = bound_caches([(slice(0, 1), 3), (slice(1, 3), 1)])
    ops = b["ops"]
    got = torch.ops.tinyseek.write_attend_paged(
        ops.latents, 1, ops.write_slots, b["new"], ops.reads, ops.block_size, b["q"], b["positions"], 0.3,
        b["rank"],
    )  # fmt: skip
    assert torch.equal(ops.latents, b["eager"].latents)
    torch.testing.assert_close(got, b["expected"], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kernels", [True, False])
def test_compiled_engine_decodes_the_eager_engines_tokens(kernels: bool, monkeypatch):
    """Batch 1, a batch of equal lengths (one attention group), a batch whose contexts differ tenfold
    (ragged groups), and 40 requests through 12 rows and a small cache (the batch changes size every
    few steps, requests wait for blocks): every token equals the eager engine's, with the CPU kernels
    and without them (a CPU without AVX-512: gathering and BLAS under torch.compile)."""
    if not kernels:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    model = random_model()
    options = dict(max_model_len=160, max_num_seqs=12, max_cache_tokens=640, max_num_batched_tokens=512)
    eager, compiled = LLM(model, **options), LLM(model, compile=True, **options)  # type: ignore[arg-type]
    greedy = SamplingParams(temperature=0, max_tokens=12)
    churn = [SamplingParams(temperature=0, max_tokens=4 + (i * 7) % 19) for i in range(40)]
    for prompts, params in (
        (prompts_of([7]), greedy),
        (prompts_of([9] * 4, seed=2), greedy),
        (prompts_of([3, 100, 4, 90, 2], seed=3), greedy),
        (prompts_of([1 + (i * 11) % 45 for i in range(40)], seed=4), churn),
    ):
        expected = [o.token_ids for o in eager.generate(prompts, params)]
        assert [o.token_ids for o in compiled.generate(prompts, params)] == expected


@pytest.mark.slow
def test_compiled_decode_guards_its_inputs_not_the_model():
    """The compiled decode's guards check the step's inputs, not the model: a trainer flipping the shared
    model to train() and back (what RL does between rollouts) recompiles nothing, and the tokens stay
    the eager engine's; a new batch size (an input) still gets its own graph."""
    from torch._dynamo.utils import counters

    model = random_model()
    eager, compiled = LLM(model, max_model_len=64), LLM(model, compile=True, max_model_len=64)
    greedy = SamplingParams(temperature=0, max_tokens=6)
    one, two = prompts_of([5]), prompts_of([5, 7], seed=2)
    expected = [o.token_ids for o in eager.generate(one, greedy)]
    assert [o.token_ids for o in compiled.generate(one, greedy)] == expected
    graphs = counters["stats"]["unique_graphs"]
    model.train()
    assert [o.token_ids for o in compiled.generate(one, greedy)] == expected
    model.eval()
    assert [o.token_ids for o in compiled.generate(one, greedy)] == expected
    assert counters["stats"]["unique_graphs"] == graphs
    assert [o.token_ids for o in compiled.generate(two, greedy)] == [
        o.token_ids for o in eager.generate(two, greedy)
    ]
    assert counters["stats"]["unique_graphs"] > graphs


@pytest.mark.slow
def test_compiled_prefill_keeps_one_graph_per_batch_kind(cpu_kernels_built):
    """Where the CPU kernels run, the prefill is compiled too: prompts of 1 to 40 tokens, a cached prefix
    (the chunk starts mid-prompt) and rows that finish at different lengths add no graph after the first
    one-row and several-row prefills of short prompts, of long ones (128 tokens or more from position
    0: expanded attention) and after a cached prefix, and every token is the eager engine's."""
    from torch._dynamo.utils import counters

    model = random_model()
    eager, compiled = LLM(model, max_model_len=256), LLM(model, compile=True, max_model_len=256)
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("the CPU kernels (and the compiled prefill) run on AVX-512 only")
    assert compiled.engine.runner.compiled_prefill is not None
    greedy = SamplingParams(temperature=0, max_tokens=3)
    cached_one, cached_two = prompts_of([20], seed=9), prompts_of([18, 21], seed=10)  # run twice: hits
    warm = [
        prompts_of([4]),
        prompts_of([6, 9], seed=2),
        cached_one,
        cached_one,
        cached_two,
        cached_two,
        prompts_of([130], seed=11),
        prompts_of([130, 140], seed=12),
    ]
    later = [prompts_of([1]), prompts_of([17]), prompts_of([40], seed=5), prompts_of([40], seed=5),
             prompts_of([1, 33, 2], seed=6), prompts_of([20, 25], seed=7), prompts_of([200], seed=13),
             prompts_of([150, 10, 160], seed=14)]  # fmt: skip
    for i, prompts in enumerate(warm + later):
        if i == len(warm):
            graphs = counters["stats"]["unique_graphs"]
        assert [o.token_ids for o in compiled.generate(prompts, greedy)] == [
            o.token_ids for o in eager.generate(prompts, greedy)
        ]
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_compiled_engines_of_one_process_keep_their_own_graphs():
    """Five compiled engines in one process, caches of five sizes (so graphs of their own), each run at
    one row and at two: every one decodes the eager engine's tokens. torch.compile keeps graphs per
    code object, at most 8 under fullgraph; shared by all runners, the fifth engine's hit that limit."""
    model = random_model()
    greedy = SamplingParams(temperature=0, max_tokens=4)
    one, two = prompts_of([5]), prompts_of([5, 9], seed=8)
    eager = LLM(model, max_model_len=64)
    expected = [[o.token_ids for o in eager.generate(p, greedy)] for p in (one, two)]
    for blocks in range(16, 21):
        compiled = LLM(model, compile=True, max_model_len=64, max_cache_tokens=16 * blocks)
        assert [[o.token_ids for o in compiled.generate(p, greedy)] for p in (one, two)] == expected
