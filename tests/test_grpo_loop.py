"""The GRPO loop end to end on a tiny policy: updates, metrics, guards, μ/β paths, resume, dynamic sampling."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.fixtures import grpo_policy_dir
from tinyseek import LLM, SamplingParams
from tinyseek.cli import main
from tinyseek.model.transformer import Transformer
from tinyseek.rl.config import GRPOConfig
from tinyseek.rl.dynamic_sampling import is_informative
from tinyseek.rl.grpo_trainer import GRPOTrainer
from tinyseek.rl.packing import Sample, completion_logits, pack
from tinyseek.rl.prompts import PromptSource, parse_tasks
from tinyseek.rl.rewards import RewardFunction, RewardSet
from tinyseek.rl.rollout import RolloutSampler
from tinyseek.rl.run import GRPORunConfig, run_grpo
from tinyseek.tokenizer import Tokenizer
from tinyseek.train.metrics import read_metrics

MAX_NEW = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grpo_policy_dir(tmp_path_factory.mktemp("policy"))


def small_config(**overrides: object) -> GRPOConfig:
    base: dict[str, object] = dict(group_size=4, prompts_per_step=3, max_new_tokens=MAX_NEW, lr=3e-3)
    base.update(overrides)
    return GRPOConfig(**base)  # type: ignore[arg-type]


def run_config(policy_dir: Path, run_dir: Path, **settings: object) -> GRPORunConfig:
    """A chat-template run of small_config() with no evaluation, progress bar or TensorBoard unless
    `settings` say otherwise."""
    base: dict[str, object] = dict(
        template="chat", grpo=small_config(), eval_every=0, progress=False, tensorboard=False
    )
    base.update(settings)
    return GRPORunConfig(model=policy_dir, run_dir=run_dir, **base)  # type: ignore[arg-type]


def shortness(
    prompts: list[str], completions: list[str], completion_lengths: list[int], **_: object
) -> list[float]:
    """A trivially learnable reward: the earlier the end of sequence, the higher."""
    return [1.0 - n / MAX_NEW for n in completion_lengths]


def trainer_for(policy_dir: Path, config: GRPOConfig, rewards: RewardSet, seed: int = 0) -> GRPOTrainer:
    tokenizer = Tokenizer.from_pretrained(policy_dir)
    model = Transformer.from_pretrained(policy_dir)
    prompts = PromptSource(parse_tasks("addition"), tokenizer, "chat", seed=seed)
    return GRPOTrainer(model, tokenizer, config, rewards, prompts, seed=seed)


def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def flat_for_even(prompts: list[str], completions: list[str], problem: list, **_: object) -> list[float]:
    """Zero variance by construction for problems with an even first operand; text length otherwise."""
    return [0.0 if p.data["a"] % 2 == 0 else float(len(c)) for p, c in zip(problem, completions, strict=True)]


EVERY_METRIC = [
    "reward/accuracy/mean", "reward/accuracy/std", "reward/format/mean", "reward/format/std",
    "reward/total/mean", "reward/total/std", "accuracy", "zero_variance_groups",
    "completion_length/mean", "completion_length/max", "completion_length/truncated",
    "kl", "entropy", "clip_low", "clip_high", "grad_norm", "lr",
    "rollout_tokens_per_s", "train_tokens_per_s", "step_seconds",
]  # fmt: skip


def test_one_step_end_to_end(policy_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = run_config(
        policy_dir, run, grpo=small_config(beta=0.04), reward_weights={"accuracy": 1.0, "format": 0.5},
        extra_rewards=[RewardFunction("short", shortness, 1.0)],
        max_steps=1, eval_every=1, eval_problems=2, save_every=1,
    )  # fmt: skip
    result = run_grpo(config)
    assert result.steps == 1 and result.stopped == "max_steps"
    records = read_metrics(run)
    train = [r for r in records if "step_seconds" in r]
    assert [r["step"] for r in train] == [1]
    missing = [k for k in EVERY_METRIC if k not in train[0]]
    assert not missing, f"metrics not logged: {missing}"
    assert train[0]["skipped"] == 0.0 and train[0]["grad_norm"] > 0
    evals = [r for r in records if "eval/greedy_accuracy" in r]
    assert [r["step"] for r in evals] == [0, 1]
    rows = [
        json.loads(line) for line in (run / "samples" / "eval-step-000001.jsonl").read_text().splitlines()
    ]
    assert {r["mode"] for r in rows} == {"greedy", "sampled"} and len(rows) == 4
    before = Transformer.from_pretrained(policy_dir)
    after = Transformer.from_pretrained(result.final_model)
    changed = [not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True)]
    assert any(changed), "one step did not change the weights"
    llm = LLM(result.final_model)
    assert llm.generate("1+2=", SamplingParams(max_tokens=4, temperature=0))[0].finish_reason is not None
    assert (result.checkpoint / "trainer_state.pt").is_file()
    assert (result.checkpoint / "reference" / "model.safetensors").is_file()


def test_learnable_reward_rises(policy_dir: Path) -> None:
    trainer = trainer_for(
        policy_dir, small_config(prompts_per_step=4, lr=1e-2), RewardSet([RewardFunction("short", shortness)])
    )
    means = [trainer.train_step().metrics["reward/short/mean"] for _ in range(6)]
    assert sum(means[-2:]) / 2 > sum(means[:2]) / 2 + 0.05, means


def test_non_finite_step_is_skipped(policy_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    trainer = trainer_for(policy_dir, small_config(), RewardSet([RewardFunction("short", shortness)]))
    groups, _ = trainer.collect()
    with torch.no_grad():
        trainer.model.norm.weight[0] = float("nan")  # every logit becomes nan
    before = params_of(trainer.model)
    with caplog.at_level(logging.WARNING, logger="tinyseek.rl.grpo_trainer"):
        metrics, skipped = trainer.update(groups)
    assert skipped and metrics["skipped"] == 1.0
    for a, b in zip(before, trainer.model.parameters(), strict=True):
        assert torch.equal(a.nan_to_num(), b.detach().nan_to_num()), "a skipped step changed the weights"
    assert not trainer.optimizer.state, "the optimizer was stepped"
    assert "non-finite" in caplog.text and "update skipped" in caplog.text


def test_mu_and_beta_paths(policy_dir: Path) -> None:
    trainer = trainer_for(
        policy_dir, small_config(mu=2, beta=0.1, lr=1e-2), RewardSet([RewardFunction("short", shortness)])
    )
    first = trainer.train_step().metrics
    assert first["inner/0/kl"] == 0.0, "KL to a reference equal to the policy must be 0"
    assert first["inner/0/ratio_min"] == first["inner/0/ratio_max"] == 1.0
    assert first["inner/1/ratio_min"] < 1.0 < first["inner/1/ratio_max"]
    assert first["inner/1/kl"] > 0.0
    assert trainer.train_step().metrics["kl"] > 0.0


def test_beta_zero_keeps_no_reference_and_skips_flat_samples(policy_dir: Path) -> None:
    trainer = trainer_for(
        policy_dir, small_config(prompts_per_step=6), RewardSet([RewardFunction("r", flat_for_even)])
    )
    assert trainer.reference is None
    groups, _ = trainer.collect()
    samples, sequences, _ = trainer.samples(groups)
    flat = sum(not is_informative(g.rewards) for g in groups)
    assert flat > 0
    assert sequences == 24 and len(samples) <= 24 - 4 * flat
    assert all(s.advantage != 0.0 for s in samples)


def test_dapo_dynamic_sampling_drops_zero_variance_groups(policy_dir: Path) -> None:
    config = GRPOConfig.preset("dapo", group_size=4, prompts_per_step=4, max_new_tokens=MAX_NEW, lr=1e-3)
    trainer = trainer_for(policy_dir, config, RewardSet([RewardFunction("r", flat_for_even)]))
    result = trainer.train_step()
    assert result.metrics["sampling/groups_drawn"] > result.metrics["sampling/groups_kept"]
    assert result.metrics["zero_variance_groups"] > 0
    assert len(result.groups) == 4 and all(is_informative(g.rewards) for g in result.groups)


def test_resume_continues_with_the_same_next_step(policy_dir: Path, tmp_path: Path) -> None:
    def config(run: Path, steps: int, resume: bool = False) -> GRPORunConfig:
        return run_config(
            policy_dir, run, reward_weights={}, extra_rewards=[RewardFunction("short", shortness)],
            max_steps=steps, save_every=0, resume=resume,
        )  # fmt: skip

    straight = run_grpo(config(tmp_path / "a", 3))
    run_grpo(config(tmp_path / "b", 2))
    resumed = run_grpo(config(tmp_path / "b", 3, resume=True))
    assert resumed.steps == 3
    steps = [r["step"] for r in read_metrics(tmp_path / "b")]
    assert steps == [1, 2, 3]
    for key in ("reward/short/mean", "completion_length/mean", "loss"):
        assert resumed.metrics[key] == pytest.approx(straight.metrics[key], rel=1e-5), key
    a = Transformer.from_pretrained(straight.final_model)
    b = Transformer.from_pretrained(resumed.final_model)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(x, y)


def test_cli_grpo_json(policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["grpo", "--model", str(policy_dir), "--run-dir", str(tmp_path / "run"), "--task", "addition",
            "--max-steps", "1", "--group-size", "2", "--prompts-per-step", "2", "--max-new-tokens", "8",
            "--eval-every", "0", "--rewards", "accuracy=1,format=0.5", "--no-tensorboard", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 1 and Path(report["final_model"], "config.json").is_file()
    assert "reward/format/mean" in report["metrics"]
    bad = ["grpo", "--model", str(policy_dir), "--run-dir", str(tmp_path / "x"), "--task", "nonsense"]
    assert main(bad) == 2
    assert "nonsense" in capsys.readouterr().err


def test_sigterm_saves_a_checkpoint_and_stops(policy_dir: Path, tmp_path: Path) -> None:
    def shortness_then_sigterm(prompts: list[str], completions: list[str], **columns: object) -> list[float]:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, as a scheduler's SIGTERM would
        return shortness(prompts, completions, **columns)  # type: ignore[arg-type]

    result = run_grpo(
        run_config(
            policy_dir,
            tmp_path / "run",
            reward_weights={},
            extra_rewards=[RewardFunction("short", shortness_then_sigterm)],
            max_steps=5,
            save_every=0,
        )
    )
    assert result.stopped == "signal" and result.steps == 1
    assert result.checkpoint is not None and result.checkpoint.name == "step-000001"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_shared_prompt_forward_matches_full_sequences(policy_dir: Path) -> None:
    model = Transformer.from_pretrained(policy_dir)
    samples = [
        Sample(0, [1, 5, 9, 14], [7, 8, 3], 1.0, False),
        Sample(0, [1, 5, 9, 14], [20], -1.0, False),
        Sample(1, [1, 30, 31, 32, 33, 34, 35], [40, 41, 42, 43, 44], 0.5, True),
        Sample(2, [1, 6], [50, 51], 0.5, False),
    ]
    (batch,) = pack(samples, max_tokens=10_000)
    shared = completion_logits(model, batch)
    for row in range(batch.num_sequences):
        prompt_len = int(batch.prompt_lengths[batch.row_prompt[row]])
        prompt = batch.prompt_ids[batch.row_prompt[row], :prompt_len]
        length = int(batch.mask[row].sum())
        full = model(torch.cat([prompt, batch.targets[row, :length]])[None])[0]
        torch.testing.assert_close(shared[row, :length], full[prompt_len - 1 : prompt_len - 1 + length])
    shared.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert len(pack(samples, max_tokens=12)) > 1


def test_mask_truncated_leaves_cut_completions_out(policy_dir: Path) -> None:
    trainer = trainer_for(
        policy_dir, small_config(mask_truncated=True), RewardSet([RewardFunction("short", shortness)])
    )
    groups, metrics = trainer.collect()
    assert 0 < metrics["completion_length/truncated"] < 1
    samples, sequences, tokens = trainer.samples(groups)
    kept = [
        (ids, cut) for g in groups for ids, cut in zip(g.completion_ids, g.truncated, strict=True) if not cut
    ]
    assert sequences == 12 and tokens == sum(len(ids) for ids, _ in kept)
    assert samples and not any(s.truncated for s in samples)


@pytest.mark.parametrize("preset", ["dr_grpo", "dapo"])
def test_other_aggregations_take_a_finite_step(policy_dir: Path, preset: str) -> None:
    config = GRPOConfig.preset(preset, group_size=4, prompts_per_step=3, max_new_tokens=MAX_NEW, lr=1e-3)
    trainer = trainer_for(policy_dir, config, RewardSet([RewardFunction("short", shortness)]))
    before = params_of(trainer.model)
    metrics = trainer.train_step().metrics
    assert metrics["skipped"] == 0.0 and metrics["grad_norm"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_time_budget_stops_the_run(policy_dir: Path, tmp_path: Path) -> None:
    result = run_grpo(run_config(policy_dir, tmp_path / "run", max_steps=50, max_minutes=1e-6))
    assert result.stopped == "time" and result.steps == 0
    assert Transformer.from_pretrained(result.final_model) is not None


def test_rollouts_stop_at_the_templates_stop_string(policy_dir: Path) -> None:
    """A stop string ends a completion, is put back into its text (the format reward needs it), and
    its tokens stay in the completion ids that are trained on; R1-Zero prompts stop at `</answer>`."""
    tokenizer = Tokenizer.from_pretrained(policy_dir)
    llm = LLM(Transformer.from_pretrained(policy_dir), tokenizer)
    items = PromptSource(parse_tasks("addition"), tokenizer, "r1zero", seed=3).take(3)
    assert PromptSource(parse_tasks("addition"), tokenizer, "r1zero").stop == ("</answer>",)
    rewards = RewardSet([RewardFunction("short", shortness)])
    sampling = GRPOConfig(group_size=4, max_new_tokens=MAX_NEW)
    free = RolloutSampler(llm, rewards, sampling, seed=1).sample(items, 0)
    texts = [t for g in free.groups for t in g.texts if len(t) > 4]
    stop = texts[0][2:4]  # a string the free-running policy does write
    cut = RolloutSampler(llm, rewards, sampling, seed=1, stop=[stop])
    stopped = [
        (text, ids, reason)
        for g in cut.sample(items, 0).groups
        for text, ids, reason in zip(g.texts, g.completion_ids, g.finish_reasons, strict=True)
    ]
    ended = [(text, ids) for text, ids, reason in stopped if reason == "stop" and text.endswith(stop)]
    assert ended, "no completion reached the stop string"
    for text, ids in ended:
        assert text.find(stop) == len(text) - len(stop)
        assert tokenizer.decode(ids, skip_special_tokens=True).startswith(text)
