"""`tinyseek r1zero` end to end at the smoke size: every artefact exists, is well formed and agrees."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest

from tinyseek.chat_template import r1_zero_prompt
from tinyseek.cost.measured import read_throughput
from tinyseek.r1zero.measurements import problem_scores
from tinyseek.r1zero.metric_names import SELF_CHECK
from tinyseek.r1zero.pipeline import STAGES, run_r1zero, self_check_reward
from tinyseek.r1zero.reading import READS_THE_OPERANDS
from tinyseek.r1zero.recipe import FamilyRecipe, Recipe
from tinyseek.r1zero.report import CURVE_FILE, EVAL_FILE, VALIDATION_FILE
from tinyseek.r1zero.seeds import run_r1zero_seeds
from tinyseek.stages import StageInterrupted
from tinyseek.train.metrics import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAMILIES = tuple(f.name for f in Recipe.preset("smoke").families)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """`tinyseek r1zero --preset smoke --seeds 0,1`: two whole pipelines and their aggregate."""
    out = tmp_path_factory.mktemp("r1zero") / "seeds"
    events: list[tuple[str, str]] = []
    summary = run_r1zero_seeds(
        Recipe.preset("smoke"), out, [0, 1], on_stage=lambda stage, event, info: events.append((stage, event))
    )
    return out, summary, events


@pytest.fixture(scope="module")
def run(seeds_run):
    """Seed 0's run directory, as `tinyseek r1zero --preset smoke` alone would write it."""
    out, _, events = seeds_run
    prefix = "seed 0: "
    result = run_r1zero(Recipe.preset("smoke"), out / "seed-0", 0, resume=True)  # every stage is done
    return result, [
        (stage.removeprefix(prefix), event) for stage, event in events if stage.startswith(prefix)
    ]


def test_every_stage_runs_and_writes_its_artefacts(run):
    result, events = run
    out = result.out_dir
    assert events == [(stage, event) for stage in STAGES for event in ("start", "done")]
    for name in ("recipe.json", "model_config.json", "stages.json", "summary.json", "report.md"):
        assert (out / name).is_file(), name
    for png in (CURVE_FILE, EVAL_FILE, VALIDATION_FILE):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    report = (out / "report.md").read_text()
    assert "| family | problems | base pass@1 | RL pass@1 |" in report
    for family in FAMILIES:
        assert f"| {family} | 4 |" in report
    assert f"![GRPO curves]({CURVE_FILE})" in report and "### After GRPO" in report
    shares = result.summary["base_reading"]
    assert set(shares) == set(FAMILIES) and all(0.0 <= share <= 1.0 for share in shares.values())
    assert "Base reads the question's operands" in report
    assert ("has not learned to read" in report) is (min(shares.values()) < READS_THE_OPERANDS)


def test_summary_holds_the_figures_and_prices_the_run(run):
    result, _ = run
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary == result.summary
    reports = {
        side: problem_scores(result.out_dir / "eval" / f"{side}_report.json") for side in ("base", "rl")
    }
    for family in FAMILIES:
        figures = summary["families"][family]
        assert figures["problems"] == 4
        for side in ("base", "rl"):
            assert set(figures[side]) == {"pass@1", "greedy"}
            # The summary's figures are the means of the per-problem scores the evaluation recorded.
            for metric in ("pass@1", "greedy"):
                assert figures[side][metric] == pytest.approx(statistics.fmean(reports[side][family][metric]))
        lo, hi = figures["gain_ci95"]["pass@1"]
        gain = figures["rl"]["pass@1"] - figures["base"]["pass@1"]
        assert lo - 1e-9 <= gain <= hi + 1e-9
    assert summary["families"][FAMILIES[0]]["base"]["greedy"] == result.base.families[FAMILIES[0]].greedy
    assert [point["step"] for point in summary["validation_curve"]] == [0, 1, 2]
    assert {c["name"] for c in summary["criteria"]} >= {"self-checking share", "mean length (tokens)"}
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
        families=(FamilyRecipe("addition"), FamilyRecipe("multiplication", error_rate=0.9)),
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


def test_validation_curve_problems_are_not_test_problems(run):
    """The curves tune the recipe on validation problems: none of them is a test problem (compared by
    the question text the model saw), and every seed draws its own test problems."""
    result, _ = run
    out = result.out_dir
    tested = {r["prompt"] for r in json.loads((out / "eval" / "rl_report.json").read_text())["records"]}
    validated = set()
    for path in (out / "grpo" / "samples").glob("eval-step-*.jsonl"):
        validated |= {json.loads(line)["question"] for line in path.read_text().splitlines()}
    assert len(validated) == 4 and len(tested) == 8
    questions = {q.split("User: ")[-1] for q in tested}
    assert not {q.split("User: ")[-1] for q in validated} & questions


def test_seeds_are_aggregated_with_intervals(seeds_run):
    out, summary, events = seeds_run
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and len(events) == 2 * 2 * len(STAGES)
    per_seed = [json.loads((out / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
    # Each seed evaluates its own test problems.
    problems = [
        {
            r["canonical"]
            for r in json.loads((out / f"seed-{s}" / "eval" / "base_report.json").read_text())["records"]
        }
        for s in (0, 1)
    ]
    assert problems[0] != problems[1]
    for family in FAMILIES:
        entry = summary["families"][family]
        for side in ("base", "rl"):
            for metric in ("pass@1", "greedy"):
                values = [s["families"][family][side][metric] for s in per_seed]
                assert entry[side][metric] == pytest.approx(statistics.fmean(values))
                lo, hi = entry[side]["ci95"][metric]
                assert lo <= entry[side][metric] <= hi
        assert set(entry["gain"]["bootstrap_ci95"]) == {"pass@1", "greedy"}
    for key in ("self_check_share", "length_mean"):
        assert summary[key]["rl"] == pytest.approx(statistics.fmean(s[key]["rl"] for s in per_seed))
        assert set(summary[key]["ci95"]) == {"base", "rl"}
    # Every seed's criteria are checked, not only the mean's.
    assert [c["name"] for c in summary["criteria"] if c["name"].startswith("seed ")] == [
        "seed 0: every criterion",
        "seed 1: every criterion",
    ]
    assert summary["criteria_met"] is all(c["passed"] for c in summary["criteria"])
    report = (out / "report.md").read_text()
    assert "| 0 |" in report and "| 1 |" in report and "seed-1/report.md" in report
    assert (out / VALIDATION_FILE).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="is not empty"):
        run_r1zero_seeds(Recipe.preset("smoke"), out, [0])


def test_cli_parses_seeds():
    from tinyseek.r1zero.seeds import parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(ValueError, match="'0,x'"):
        parse_seeds("0,x")
    with pytest.raises(ValueError, match="no repeats"):
        parse_seeds("1,1")
