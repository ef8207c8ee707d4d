"""Schedules and the balancing pieces in isolation: lr shapes, V3's bias update and balance loss."""

from __future__ import annotations

import math

import pytest
import torch

from tests.train_fixtures import micro_config
from tinyseek.model.transformer import Transformer
from tinyseek.train.balance import LoadCounter, sequence_balance_loss
from tinyseek.train.schedule import lr_factor


def test_warmup_then_cosine_and_wsd() -> None:
    cos = [lr_factor(s, 100, 10, "cosine", 0.1, 0.2) for s in range(100)]
    assert cos[0] == pytest.approx(0.1) and cos[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(cos[10:], cos[11:], strict=False)) and cos[-1] == pytest.approx(
        0.1, abs=1e-3
    )
    wsd = [lr_factor(s, 100, 10, "wsd", 0.0, 0.2) for s in range(101)]
    assert wsd[10:80] == [1.0] * 70 and wsd[90] == pytest.approx(0.5) and wsd[100] == 0.0
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_factor(0, 10, 1, "linear", 0.1, 0.2)


def test_bias_update_raises_underloaded_experts() -> None:
    model = Transformer(micro_config())
    counter = LoadCounter(model)
    name = next(iter(counter.layers))
    counter.counts[name] = torch.tensor([12, 0, 4, 4, 4, 4, 4, 4])  # mean 4.5
    bias = counter.layers[name].gate.e_score_correction_bias
    assert bias is not None
    counter.update_bias(0.01)
    assert (
        bias[0] == pytest.approx(-0.01) and bias[1] == pytest.approx(0.01) and bias[2] == pytest.approx(0.01)
    )
    assert counter.max_violation()[name] == pytest.approx(12 / 4.5 - 1)


def test_sequence_balance_loss_is_alpha_times_sum_f_p() -> None:
    torch.manual_seed(0)
    model = Transformer(micro_config(num_nextn_predict_layers=0)).train()
    model(torch.randint(0, 100, (3, 16)))
    (moe,) = LoadCounter(model).layers.values()
    scores, indices = moe.route_scores, moe.route_indices
    assert scores is not None and scores.requires_grad
    scores = scores.detach()
    assert indices is not None and scores.shape == (3, 16, 8)
    expected = 0.0
    for b in range(3):
        f = torch.bincount(indices[b].flatten(), minlength=8).float() * 8 / (2 * 16)
        p = (scores[b] / scores[b].sum(-1, keepdim=True)).mean(0)
        expected += float((f * p).sum()) / 3
    loss = sequence_balance_loss(model, 0.5)
    assert loss is not None and float(loss.detach()) == pytest.approx(0.5 * expected, rel=1e-5)
    assert math.isfinite(float(loss.detach())) and loss.requires_grad
