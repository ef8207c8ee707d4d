"""GRPO objective against hand-computed values: advantages, log-probs, clipping, k3 KL, aggregations,
truncation masking, config validation, dynamic-sampling refill and overlong shaping."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from tests.fixtures import tiny_config
from tinyseek.model.transformer import Transformer
from tinyseek.rl import (
    GRPOConfig,
    aggregate,
    fill_batch,
    group_advantages,
    grpo_loss,
    informative_groups,
    k3_kl,
    overlong_penalty,
    token_entropy,
    token_logprobs,
)
from tinyseek.rl.dynamic_sampling import is_informative

# --- advantages -------------------------------------------------------------------------------------------


def test_group_advantages_hand_values():
    rewards = torch.tensor([0.0, 0.0, 0.0, 3.0, 1.0, 0.0, 1.0, 0.0])
    adv = group_advantages(rewards, group_size=4, eps=0.0)
    # Group 1: mean 0.75, unbiased std 1.5. Group 2: mean 0.5, unbiased std sqrt(1/3).
    s = math.sqrt(1 / 3)
    expected = [-0.5, -0.5, -0.5, 1.5, 0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s]
    assert adv.tolist() == pytest.approx(expected, rel=1e-6)


def test_group_advantages_eps_and_constant_group():
    adv = group_advantages(torch.tensor([1.0, 0.0, 2.0, 2.0]), group_size=2, eps=1e-4)
    std = math.sqrt(0.5)
    assert adv.tolist() == pytest.approx([0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.0, 0.0], rel=1e-6)


def test_dr_grpo_advantages_do_not_divide_by_std():
    adv = group_advantages(torch.tensor([0.0, 0.0, 0.0, 3.0]), group_size=4, scale=False)
    assert adv.tolist() == pytest.approx([-0.75, -0.75, -0.75, 2.25])


@pytest.mark.parametrize(
    "rewards,group_size", [(torch.zeros(6), 4), (torch.zeros(4), 1), (torch.zeros(2, 2), 2)]
)
def test_group_advantages_rejects_bad_layout(rewards, group_size):
    with pytest.raises(ValueError, match="group_size|1-D"):
        group_advantages(rewards, group_size)


# --- log-probs, entropy, KL ---------------------------------------------------------------------------------


def test_token_logprobs_hand_value_and_temperature():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    targets = torch.tensor([[1]])
    assert token_logprobs(logits, targets).item() == pytest.approx(math.log(0.75))
    # At T = 2 the logits halve: p = sqrt(3) / (1 + sqrt(3)).
    expected = math.log(math.sqrt(3) / (1 + math.sqrt(3)))
    assert token_logprobs(logits, targets, temperature=2.0).item() == pytest.approx(expected)


def test_token_logprobs_match_log_softmax_in_fp32_with_gradient():
    logits = torch.randn(3, 5, 11, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5))
    got = token_logprobs(logits, targets, temperature=0.7)
    assert got.dtype == torch.float32
    reference = (
        torch.log_softmax(logits.detach().double() / 0.7, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    )
    torch.testing.assert_close(got.double(), reference, atol=1e-5, rtol=1e-5)
    got.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


def test_chunked_logprobs_and_entropy_match_one_pass(monkeypatch):
    import tinyseek.rl.objective as objective

    logits, targets = torch.randn(5, 4, 9), torch.randint(0, 9, (5, 4))
    one_pass = token_logprobs(logits, targets), token_entropy(logits)
    monkeypatch.setattr(objective, "FP32_CHUNK_ELEMENTS", 2 * 4 * 9)  # two rows per chunk: 3 chunks
    assert objective._row_chunks(logits) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    torch.testing.assert_close(token_logprobs(logits, targets), one_pass[0])
    torch.testing.assert_close(token_entropy(logits), one_pass[1])


def test_token_logprobs_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="logits"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), temperature=0.0)


def test_token_entropy_uniform_and_peaked():
    logits = torch.zeros(1, 2, 8)
    logits[0, 1, 3] = 100.0
    entropy = token_entropy(logits)
    assert entropy[0, 0].item() == pytest.approx(math.log(8))
    assert entropy[0, 1].item() == pytest.approx(0.0, abs=1e-6)


def test_k3_kl_hand_value():
    logp = torch.tensor([math.log(0.5), math.log(0.3)])
    ref = torch.tensor([math.log(0.25), math.log(0.3)])
    # ratio π_ref/π_θ = 0.5: 0.5 - ln 0.5 - 1 = 0.19315; identical policies give 0.
    assert k3_kl(logp, ref).tolist() == pytest.approx([0.5 - math.log(0.5) - 1, 0.0], abs=1e-7)
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


# --- clipped surrogate ----------------------------------------------------------------------------------


def _one_token_batch(ratios: list[float], advantages: list[float]):
    old = torch.log(torch.full((len(ratios), 1), 0.4))
    logp = (old + torch.log(torch.tensor(ratios)).unsqueeze(-1)).requires_grad_(True)
    return logp, old, torch.tensor(advantages), torch.ones(len(ratios), 1)


def test_clipping_both_sides_with_clip_higher():
    cfg = GRPOConfig(loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28)
    logp, old, adv, mask = _one_token_batch([1.5, 0.5, 1.5, 0.5], [1.0, -1.0, -1.0, 1.0])
    out = grpo_loss(logp, adv, mask, cfg, old_logprobs=old)
    # Per-token objectives: min(1.5, 1.28) = 1.28 (high clip), min(-0.5, -0.8) = -0.8 (low clip),
    # min(-1.5, -1.28) = -1.5 (unclipped), min(0.5, 0.8) = 0.5 (unclipped). Loss = -mean = 0.13.
    assert out.loss.item() == pytest.approx(0.13, abs=1e-6)
    out.loss.backward()
    # Clipped tokens get no gradient; unclipped ones get -ρA / 4.
    assert logp.grad.squeeze(-1).tolist() == pytest.approx([0.0, 0.0, 0.375, -0.125], abs=1e-6)
    m = out.metrics
    assert (m["clip_high"], m["clip_low"], m["clip"]) == pytest.approx((0.25, 0.25, 0.5))
    assert (m["ratio_min"], m["ratio_max"], m["ratio_mean"]) == pytest.approx((0.5, 1.5, 1.0))
    assert m["tokens"] == 4


def test_clip_higher_lets_positive_advantage_ratios_grow():
    logp, old, adv, mask = _one_token_batch([1.25], [1.0])
    symmetric = grpo_loss(logp, adv, mask, GRPOConfig(epsilon_high=0.2), old_logprobs=old)
    higher = grpo_loss(logp, adv, mask, GRPOConfig(epsilon_high=0.28), old_logprobs=old)
    assert symmetric.loss.item() == pytest.approx(-1.2)
    assert symmetric.metrics["clip_high"] == 1.0
    assert higher.loss.item() == pytest.approx(-1.25)
    assert higher.metrics["clip_high"] == 0.0


def test_on_policy_ratio_is_one_and_gradient_is_advantage_weighted():
    logp = torch.log(torch.tensor([[0.2, 0.7]])).requires_grad_(True)
    out = grpo_loss(logp, torch.tensor([2.0]), torch.ones(1, 2), GRPOConfig())
    assert out.loss.item() == pytest.approx(-2.0)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -1.0]]))
    assert out.metrics["clip"] == 0.0 and out.metrics["ratio_mean"] == pytest.approx(1.0)


def test_kl_term_is_beta_weighted_and_needs_reference():
    logp = torch.log(torch.tensor([[0.5, 0.3]]))
    ref = torch.log(torch.tensor([[0.25, 0.3]]))
    kl0 = 0.5 - math.log(0.5) - 1
    cfg = GRPOConfig(beta=0.1, loss_type="grpo")
    out = grpo_loss(logp, torch.zeros(1), torch.ones(1, 2), cfg, ref_logprobs=ref)
    assert out.loss.item() == pytest.approx(0.1 * kl0 / 2)
    assert out.metrics["kl"] == pytest.approx(kl0 / 2)
    # β = 0: the KL is reported but not added.
    out = grpo_loss(logp, torch.zeros(1), torch.ones(1, 2), GRPOConfig(beta=0.0), ref_logprobs=ref)
    assert out.loss.item() == 0.0 and out.metrics["kl"] == pytest.approx(kl0 / 2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(logp, torch.zeros(1), torch.ones(1, 2), cfg)


# --- aggregations ----------------------------------------------------------------------------------------

# Two on-policy sequences: 3 tokens with A = 1 and 1 token (then padding) with A = 2,
# so the per-token losses are -1, -1, -1 and -2.
_MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
_ADV = torch.tensor([1.0, 2.0])


@pytest.mark.parametrize(
    "loss_type,expected_loss,expected_grad",
    [
        ("grpo", -1.5, [[-1 / 6, -1 / 6, -1 / 6], [-1.0, 0.0, 0.0]]),  # mean of sequence means
        ("dapo", -1.25, [[-0.25, -0.25, -0.25], [-0.5, 0.0, 0.0]]),  # mean over the 4 tokens
        ("dr_grpo", -0.625, [[-0.125, -0.125, -0.125], [-0.25, 0.0, 0.0]]),  # sum / (2 seqs x 4)
    ],
)
def test_each_aggregation(loss_type, expected_loss, expected_grad):
    logp = torch.full((2, 3), -1.0, requires_grad=True)
    out = grpo_loss(logp, _ADV, _MASK, GRPOConfig(loss_type=loss_type, max_new_tokens=4))
    assert out.loss.item() == pytest.approx(expected_loss)
    out.loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor(expected_grad))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batches_with_global_denominators_match_one_batch(loss_type):
    cfg = GRPOConfig(loss_type=loss_type, max_new_tokens=5)
    logp = torch.randn(4, 5).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(4, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    adv = torch.tensor([0.5, -1.0, 2.0, 0.0])
    full = grpo_loss(logp, adv, mask, cfg, old_logprobs=old).loss
    (full_grad,) = torch.autograd.grad(full, logp)
    total = 0.0
    for rows in (slice(0, 1), slice(1, 4)):
        part = grpo_loss(
            logp[rows], adv[rows], mask[rows], cfg, old_logprobs=old[rows], num_sequences=4, num_tokens=11
        ).loss
        total = total + part
    (split_grad,) = torch.autograd.grad(total, logp)
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(split_grad, full_grad)


def test_aggregate_rejects_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        aggregate(torch.zeros(1, 1), torch.ones(1, 1), "ppo", max_len=1)


def test_mask_truncated_removes_cut_completions():
    truncated = torch.tensor([False, True])
    for loss_type, expected in (("dapo", -1.0), ("grpo", -0.5), ("dr_grpo", -3 / 8)):
        cfg = GRPOConfig(loss_type=loss_type, mask_truncated=True, max_new_tokens=4)
        out = grpo_loss(torch.full((2, 3), -1.0), _ADV, _MASK, cfg, truncated=truncated)
        assert out.loss.item() == pytest.approx(expected), loss_type
        assert out.metrics["tokens"] == 3
    with pytest.raises(ValueError, match="truncated"):
        grpo_loss(torch.zeros(2, 3), _ADV, _MASK, GRPOConfig(mask_truncated=True))


def test_non_finite_padding_does_not_leak_into_loss_or_gradient():
    logp = torch.tensor([[-1.0, float("-inf")], [-2.0, float("nan")]], requires_grad=True)
    ref = torch.tensor([[-1.5, float("inf")], [-2.0, float("nan")]])
    mask = torch.tensor([[1, 0], [1, 0]])
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        cfg = GRPOConfig(loss_type=loss_type, beta=0.04)
        out = grpo_loss(
            logp, torch.tensor([1.0, -1.0]), mask, cfg, old_logprobs=logp.detach(), ref_logprobs=ref
        )
        (grad,) = torch.autograd.grad(out.loss, logp)
        assert math.isfinite(out.loss.item()) and torch.isfinite(grad).all()
        assert all(math.isfinite(v) for v in out.metrics.values())


def test_entropy_metric_is_masked_mean():
    entropy = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    out = grpo_loss(torch.zeros(2, 3), _ADV, _MASK, GRPOConfig(), entropy=entropy)
    assert out.metrics["entropy"] == pytest.approx(2.5)


def test_one_step_on_a_real_model_raises_the_rewarded_completion():
    """End to end through the tiny MLA+MoE model: a positive advantage makes its completion likelier."""
    config = tiny_config(
        vocab_size=32, num_hidden_layers=2, n_routed_experts=4, n_group=2, topk_group=1,
        max_position_embeddings=64, num_nextn_predict_layers=0, initializer_range=0.006,
    )  # fmt: skip
    model = Transformer(config)
    model.train()
    prompt_len = 3
    ids = torch.randint(0, 32, (2, 8))
    mask = torch.ones(2, 5)

    def completion_logprobs() -> torch.Tensor:
        logits = model(ids)[:, prompt_len - 1 : -1]
        return token_logprobs(logits, ids[:, prompt_len:])

    before = completion_logprobs().detach()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    out = grpo_loss(completion_logprobs(), torch.tensor([1.0, -1.0]), mask, GRPOConfig(), old_logprobs=before)
    out.loss.backward()
    optimizer.step()
    after = completion_logprobs().detach()
    assert after[0].sum() > before[0].sum()
    assert after[1].sum() < before[1].sum()


# --- config ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("group_size", 1),
        ("prompts_per_step", 0),
        ("temperature", 0.0),
        ("top_p", 1.5),
        ("max_new_tokens", 0),
        ("loss_type", "ppo"),
        ("epsilon_low", 1.0),
        ("epsilon_high", -0.1),
        ("beta", -0.01),
        ("advantage_eps", 0.0),
        ("mu", 0),
        ("lr", float("nan")),
        ("weight_decay", -1.0),
        ("max_grad_norm", 0.0),
        ("max_sampling_rounds", 0),
        ("overlong_cache", 300),
        ("overlong_max_len", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"GRPOConfig.{field} ="):
        GRPOConfig(**{field: value})


def test_presets_carry_published_defaults():
    dapo = GRPOConfig.preset("dapo", group_size=16)
    assert (dapo.loss_type, dapo.epsilon_low, dapo.epsilon_high, dapo.beta, dapo.dynamic_sampling) == (
        "dapo",
        0.2,
        0.28,
        0.0,
        True,
    )
    assert dapo.group_size == 16
    dr = GRPOConfig.preset("dr_grpo")
    assert dr.loss_type == "dr_grpo" and dr.scale_rewards is False
    assert GRPOConfig(max_new_tokens=100).overlong_limit == 100
    assert GRPOConfig(max_new_tokens=100, overlong_max_len=80, overlong_cache=20).overlong_limit == 80
    with pytest.raises(ValueError, match="unknown GRPO preset 'ppo'"):
        GRPOConfig.preset("ppo")


# --- dynamic sampling ---------------------------------------------------------------------------------------


class _Group:
    def __init__(self, rewards: list[float]):
        self.rewards = rewards


def _scripted_draw(script: list[list[float]]):
    """A `draw` that hands out the scripted groups in order and records how many were asked for."""
    pending = [_Group(r) for r in script]
    requests: list[int] = []

    def draw(n: int) -> list[_Group]:
        requests.append(n)
        batch, pending[:] = pending[:n], pending[n:]
        return batch

    return draw, requests


def test_informative_groups():
    rewards = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0]
    assert informative_groups(rewards, 4) == [0, 3]
    assert is_informative([0.0, 1e-9]) and not is_informative([0.3, 0.3])
    with pytest.raises(ValueError, match="divide"):
        informative_groups(rewards, 3)


def test_fill_batch_refills_by_observed_share_and_trims():
    mixed, flat = [0.0, 1.0], [1.0, 1.0]
    script = [mixed, flat, flat, mixed] + [flat, mixed, flat, flat] + [mixed, mixed, mixed]
    draw, requests = _scripted_draw(script)
    batch = fill_batch(draw, target=4, max_rounds=5)
    # Round 1: 4 drawn, 2 kept (share 1/2) -> ask ceil(2 / 0.5) = 4; round 2: 1 more kept
    # (share 3/8) -> ask ceil(1 / 0.375) = 3; round 3: 3 kept, trimmed to the target of 4.
    assert requests == [4, 4, 3]
    assert batch.full and len(batch.groups) == 4
    assert (batch.rounds, batch.drawn, batch.dropped) == (3, 11, 5)
    assert batch.informative_share == pytest.approx(6 / 11)
    assert all(is_informative(g.rewards) for g in batch.groups)


def test_fill_batch_gives_up_after_max_rounds_with_a_warning(caplog):
    draw, requests = _scripted_draw([[1.0, 1.0]] * 100)
    with caplog.at_level(logging.WARNING, logger="tinyseek.rl.dynamic_sampling"):
        batch = fill_batch(draw, target=3, max_rounds=2)
    assert requests == [3, 3]  # nothing informative yet: ask for a full batch again
    assert batch.groups == [] and not batch.full and batch.rounds == 2
    assert "kept 0 of 3 groups" in caplog.text
    with pytest.raises(ValueError, match="max_rounds"):
        fill_batch(draw, target=3, max_rounds=0)


# --- overlong shaping ----------------------------------------------------------------------------------------


def test_overlong_penalty_hand_values():
    # L_max = 20, L_cache = 5: free up to 15 tokens, then -1/5 per token, -1 from 20 on.
    got = [overlong_penalty(n, max_len=20, cache=5) for n in (0, 15, 16, 18, 20, 25)]
    assert got == pytest.approx([0.0, 0.0, -0.2, -0.6, -1.0, -1.0])
    with pytest.raises(ValueError, match="cache"):
        overlong_penalty(3, max_len=10, cache=0)
    with pytest.raises(ValueError, match="length"):
        overlong_penalty(-1, max_len=10, cache=2)
