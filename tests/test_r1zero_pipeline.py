"""`tinyseek r1zero` end to end at the smoke size: every artefact exists, is well formed and agrees."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tinyseek.chat_template import r1_zero_prompt
from tinyseek.cost.measured import read_throughput
from tinyseek.r1zero.metric_names import SELF_CHECK
from tinyseek.r1zero.pipeline import STAGES, StageInterrupted, run_r1zero, self_check_reward
from tinyseek.r1zero.recipe import FamilyRecipe, Recipe
from tinyseek.r1zero.report import CURVE_FILE, EVAL_FILE
from tinyseek.train.metrics import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The smoke model's ops are microseconds long: a second intra-op thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("r1zero") / "run"
    events: list[tuple[str, str]] = []
    result = run_r1zero(
        Recipe.preset("smoke"), out, on_stage=lambda stage, event, info: events.append((stage, event))
    )
    return result, events


def test_every_stage_runs_and_writes_its_artefacts(run):
    result, events = run
    out = result.out_dir
    assert events == [(stage, event) for stage in STAGES for event in ("start", "done")]
    for name in ("recipe.json", "model_config.json", "stages.json", "summary.json", "report.md"):
        assert (out / name).is_file(), name
    for png in (CURVE_FILE, EVAL_FILE):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    report = (out / "report.md").read_text()
    assert "| family | problems | base pass@1 | RL pass@1 |" in report
    for family in ("addition", "multiplication"):
        assert f"| {family} | 4 |" in report
    assert f"![GRPO curves]({CURVE_FILE})" in report and "### After GRPO" in report


def test_summary_holds_the_figures_and_prices_the_run(run):
    result, _ = run
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary == result.summary
    for family in ("addition", "multiplication"):
        figures = summary["families"][family]
        assert figures["problems"] == 4
        for side in ("base", "rl"):
            assert set(figures[side]) == {"pass@1", "greedy"}
            assert all(0.0 <= v <= 1.0 for v in figures[side].values())
    assert summary["families"]["addition"]["base"]["greedy"] == result.base.families["addition"].greedy
    for key in ("self_check_share", "length_mean"):
        assert set(summary[key]) == {"base", "rl", "grpo"}
    assert summary["length_mean"]["base"] > 0
    assert set(summary["seconds"]) == {*STAGES, "total"}
    assert summary["pretrain"]["tokens"] > 0 and summary["grpo"]["steps"] == 2
    # `tinyseek cost --measured OUT` reads the pretraining throughput from summary.json.
    measured = {t.key: t.tokens_per_s for t in read_throughput(result.out_dir)}
    assert measured["tokens_per_s"] == pytest.approx(summary["pretrain"]["tokens_per_s"])


def test_base_and_rl_are_evaluated_on_the_same_problems(run):
    result, _ = run
    reports = [
        json.loads((result.out_dir / "eval" / f"{side}_report.json").read_text()) for side in ("base", "rl")
    ]
    problems = [[(r["task"], r["canonical"]) for r in report["records"]] for report in reports]
    assert problems[0] == problems[1] and len(problems[0]) == 8
    assert all(len(r["samples"]) == 2 and "greedy" in r for r in reports[0]["records"])
    texts = [s["text"] for r in reports[0]["records"] for s in r["samples"]]
    assert result.base.self_check_share == pytest.approx(sum(self_check_reward([], texts)) / len(texts))


def test_grpo_logs_the_self_check_share_every_step(run):
    result, _ = run
    steps = [r for r in read_metrics(result.out_dir / "grpo") if "reward/accuracy/mean" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(0.0 <= r[SELF_CHECK] <= 1.0 for r in steps)
    assert summary_share(result) == steps[-1][SELF_CHECK]


def summary_share(result) -> float:
    return result.summary["self_check_share"]["grpo"]["last_step"]


def test_final_model_loads_and_generates(run):
    from tinyseek import LLM, SamplingParams

    result, _ = run
    model = result.out_dir / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in model.iterdir()
    }
    llm = LLM(model)
    out = llm.generate(["User: What is 12 + 34?. Assistant:"], SamplingParams(max_tokens=6, temperature=0))
    assert 1 <= len(out[0].outputs[0].token_ids) <= 6
    # Its chat template is the R1-Zero format it was trained on, token for token (prompt, then the
    # completion's opening ` <think>\n`), so `tinyseek chat` / `serve` ask in the model's own format.
    question = "What is 12 + 34?"
    tokenizer = llm.tokenizer
    expected = tokenizer.encode(r1_zero_prompt(question)) + tokenizer.encode(
        " <think>\n", add_special_tokens=False
    )
    assert llm.chat_prompt([{"role": "user", "content": question}]) == expected
    reply = llm.chat([{"role": "user", "content": question}], SamplingParams(max_tokens=4, temperature=0))
    assert reply[0].outputs[0].token_ids


def test_cli_resume_skips_finished_stages(run, capsys):
    from tinyseek.cli import main

    result, _ = run
    assert main(["r1zero", "--preset", "smoke", "--out", str(result.out_dir), "--resume", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped (already done)") == len(STAGES)
    printed = json.loads(captured.out)
    assert printed["seconds"] == result.summary["seconds"]  # nothing re-ran, the measured times are kept


def test_refuses_a_used_directory_and_mixed_family_rates(run, tmp_path):
    result, _ = run
    with pytest.raises(ValueError, match="is not empty"):
        run_r1zero(Recipe.preset("smoke"), result.out_dir)
    mixed = dataclasses.replace(
        Recipe.preset("smoke"),
        families=(FamilyRecipe("addition"), FamilyRecipe("multiplication", error_rate=0.5)),
    )
    with pytest.raises(ValueError, match="one value for all tasks"):
        run_r1zero(mixed, tmp_path / "mixed")


def test_a_signal_stops_the_pipeline_and_resume_finishes_it(tmp_path):
    """SIGTERM during pretraining: the step finishes and is checkpointed, no later stage runs, and
    resume continues the same pretraining run to its step budget, then runs every other stage."""
    import os
    import signal

    out = tmp_path / "run"
    recipe = Recipe.preset("smoke")

    def stop_at_step_3(step, max_steps, record):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    # The trainer agrees on stopping before it reports a step, so a signal sent from step 3's report is
    # acted on after step 4.
    with pytest.raises(StageInterrupted, match="SIGTERM at step 4"):
        run_r1zero(recipe, out, pretrain_progress=stop_at_step_3)
    assert not (out / "eval").exists()
    events: list[tuple[str, str]] = []
    result = run_r1zero(
        recipe, out, resume=True, on_stage=lambda stage, event, info: events.append((stage, event))
    )
    assert events[:2] == [("pretrain", "start"), ("pretrain", "done")]
    steps = [r["step"] for r in read_metrics(out / "pretrain") if "loss" in r]
    assert steps == list(range(1, result.summary["pretrain"]["steps"] + 1))  # one run, no step twice
    assert (result.model_dir / "config.json").is_file()
