"""DCP checkpoints and parallel degrees in one process (no torchrun): round trip, atomicity, errors.

The multi-rank side (2 gloo ranks, FSDP2 + EP) is in tests/test_parallel_dist.py."""

from __future__ import annotations

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F

from tests.fixtures import tiny_config
from tinyseek import cli
from tinyseek.checkpoint.run import (
    convert_to_hf,
    latest_checkpoint,
    load_sharded,
    save_sharded,
    step_directory,
)
from tinyseek.model.transformer import Transformer
from tinyseek.parallel import ParallelDims, clip_grad_norm_, init_distributed

pytestmark = pytest.mark.usefixtures("one_thread")


def trained(seed: int = 0, **config) -> tuple[Transformer, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(num_nextn_predict_layers=0, **config))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 96, (2, 10), generator=torch.Generator().manual_seed(seed))
    logits = model(ids)
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    opt.step()
    opt.zero_grad()
    return model, opt


def test_round_trip_restores_model_optimizer_and_step(tmp_path):
    model, opt = trained(0)
    path = save_sharded(tmp_path, 7, model, opt)
    assert path == step_directory(tmp_path, 7, sharded=True) == latest_checkpoint(tmp_path)
    assert (path / "config.json").exists()

    other, other_opt = trained(1)
    assert load_sharded(tmp_path, other, other_opt) == 7
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], other_opt.state[q][key]), key


def test_tied_embeddings_round_trip_and_convert(tmp_path):
    model, opt = trained(0, tie_word_embeddings=True)
    save_sharded(tmp_path / "ckpt", 1, model, opt)
    other, other_opt = trained(1, tie_word_embeddings=True)
    assert load_sharded(tmp_path / "ckpt", other, other_opt) == 1
    assert other.lm_head.weight is other.embed_tokens.weight
    assert torch.equal(other.embed_tokens.weight, model.embed_tokens.weight)
    hf = Transformer.from_pretrained(convert_to_hf(tmp_path / "ckpt", tmp_path / "hf"))
    ids = torch.arange(12).view(1, 12)
    with torch.no_grad():
        assert torch.equal(hf(ids), model.eval()(ids))


def test_no_checkpoint_yet_means_step_zero(tmp_path):
    model, opt = trained(0)
    assert load_sharded(tmp_path / "run", model, opt) == 0
    assert latest_checkpoint(tmp_path / "run") is None


def test_failed_save_leaves_latest_and_no_partial_directory(tmp_path, monkeypatch):
    model, opt = trained(0)
    save_sharded(tmp_path, 1, model, opt)

    def dies_midway(state, checkpoint_id):  # shards half written, then the process "dies"
        (checkpoint_id / "__0_0.distcp").write_bytes(b"partial")
        raise RuntimeError("killed during save")

    monkeypatch.setattr(dcp, "save", dies_midway)
    with pytest.raises(RuntimeError, match="killed during save"):
        save_sharded(tmp_path, 2, model, opt)
    assert latest_checkpoint(tmp_path) == step_directory(tmp_path, 1, sharded=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000001"]


def test_latest_naming_a_broken_directory_is_an_error(tmp_path):
    (tmp_path / "latest").write_text("step-00000009\n")
    with pytest.raises(FileNotFoundError, match="step-00000009"):
        latest_checkpoint(tmp_path)


def test_convert_names_what_is_missing_and_takes_a_config(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*\.metadata"):
        convert_to_hf(tmp_path / "nowhere", tmp_path / "out")
    model, opt = trained(0)
    path = save_sharded(tmp_path / "ckpt", 1, model, opt)
    model.config.save_pretrained(tmp_path / "cfg")
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert_to_hf(path, tmp_path / "out")
    args = ["checkpoint", "convert", str(path), str(tmp_path / "out"), "--config", str(tmp_path / "cfg")]
    assert cli.main(args) == 0
    assert "converted" in capsys.readouterr().out
    assert torch.equal(Transformer.from_pretrained(tmp_path / "out").lm_head.weight, model.lm_head.weight)


@pytest.mark.parametrize(
    ("world", "ep", "message"),
    [(2, 3, "ep=3: expected a divisor of the world size 2"), (4, 0, "ep=0"), (0, 1, "world_size=0")],
)
def test_bad_degrees(world, ep, message):
    with pytest.raises(ValueError, match=message):
        ParallelDims(world_size=world, ep=ep)


def test_ep_must_divide_the_experts():
    ParallelDims(world_size=4, ep=4).check_experts(8)
    with pytest.raises(ValueError, match="ep=4: expected a divisor of n_routed_experts=6"):
        ParallelDims(world_size=4, ep=4).check_experts(6)


def test_init_distributed_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        init_distributed("cpu")


def test_clip_grad_norm_matches_torch_on_a_plain_model():
    torch.manual_seed(0)
    a, b = Transformer(tiny_config()), Transformer(tiny_config())
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 96, (2, 10), generator=torch.Generator().manual_seed(0))
    for model in (a, b):
        model(ids).logsumexp(-1).mean().backward()
    ours = clip_grad_norm_(a.parameters(), 0.01)
    theirs = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.01)
    assert torch.allclose(ours, theirs, rtol=1e-6) and ours > 0.01
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-9)
