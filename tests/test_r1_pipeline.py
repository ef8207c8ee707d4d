"""`tinyseek r1` end to end at the smoke size: every stage runs, a run killed between stages resumes
without redoing finished ones, and summary.json holds `arms.<arm>.<lang|all>.<metric>`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tinyseek.r1.measure import METRICS, load_scores
from tinyseek.r1.pipeline import ARMS, STAGES, TRAINING_STAGES, run_r1
from tinyseek.r1.recipe import LANGS, R1Recipe
from tinyseek.r1.report import CURVES_FILE
from tinyseek.r1zero.recipe import GRPORecipe
from tinyseek.stages import STAGES_FILE, RunHooks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STOP_AFTER = "cold_start_sft"  # the stage the first run is killed after

pytestmark = pytest.mark.usefixtures("one_thread")


class Killed(Exception):
    """Stands for the process dying between two stages."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A smoke run killed right after STOP_AFTER finished, then resumed to the end."""
    out = tmp_path_factory.mktemp("r1") / "run"
    recipe = R1Recipe.preset("smoke")

    def kill(stage, event, info):
        if (stage, event) == (STOP_AFTER, "done"):
            raise Killed(stage)

    with pytest.raises(Killed):
        run_r1(recipe, out, hooks=RunHooks(kill))
    done = TRAINING_STAGES[: TRAINING_STAGES.index(STOP_AFTER) + 1]
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != STAGES_FILE}
    seconds = json.loads((out / STAGES_FILE).read_text())
    events: list[tuple[str, str]] = []
    result = run_r1(
        recipe, out, resume=True, hooks=RunHooks(lambda stage, event, info: events.append((stage, event)))
    )
    return result, events, done, stamps, seconds


def test_resume_skips_finished_stages_and_runs_the_rest(run):
    result, events, done, stamps, seconds = run
    assert events[: len(done)] == [(stage, "skipped") for stage in done]
    rest = [stage for stage in STAGES if stage not in done]
    assert events[len(done) :] == [(stage, event) for stage in rest for event in ("start", "done")]
    # Nothing a finished stage wrote was written again, and its measured seconds are kept.
    changed = [str(p) for p, stamp in stamps.items() if p.stat().st_mtime_ns != stamp]
    assert changed == []
    recorded = json.loads((result.out_dir / STAGES_FILE).read_text())
    assert {k: recorded[k] for k in done} == {k: seconds[k] for k in done}


def test_every_stage_writes_its_artefacts(run):
    result = run[0]
    out = result.out_dir
    for name in ("recipe.json", "stages.json", "summary.json", "report.md"):
        assert (out / name).is_file(), name
    assert (out / CURVES_FILE).read_bytes()[:8] == PNG_MAGIC
    for arm, model in ARMS.items():
        assert (out / model / "config.json").is_file(), arm
        for lang in LANGS:
            assert (out / "eval" / arm / f"{lang}.json").is_file()
    student = json.loads((out / "pretrain_student" / "model" / "config.json").read_text())
    assert student["first_k_dense_replace"] == student["num_hidden_layers"]  # every layer dense
    for traces in ("cold_start", "rejection"):
        rows = [json.loads(line) for line in (out / traces / "traces.jsonl").read_text().splitlines()]
        assert rows and {r["lang"] for r in rows} == set(LANGS)
    report = (out / "report.md").read_text()
    assert "## Findings" in report and "## Stage timeline" in report and f"]({CURVES_FILE})" in report
    for lang in LANGS:
        assert f"## {lang}" in report


def test_summary_keys_and_figures(run):
    result = run[0]
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary == result.summary
    assert set(summary["arms"]) == set(ARMS)
    for arm in ARMS:
        scores = load_scores(result.out_dir / "eval" / arm, LANGS)
        for key in (*LANGS, "all"):
            figures = summary["arms"][arm][key]
            assert set(METRICS) <= set(figures)
            assert figures["problems"] == (2 * 2 if key != "all" else 2 * 2 * len(LANGS))
            assert 0.0 <= figures["pass@1"] <= 1.0 and 0.0 <= figures["format"] <= 1.0
            lo, hi = figures["pass@1_ci95"]
            assert lo - 1e-9 <= figures["pass@1"] <= hi + 1e-9
        mean = sum(s["pass@1"] for s in scores.values()) / len(scores)  # type: ignore[misc]
        assert summary["arms"][arm]["all"]["pass@1"] == pytest.approx(mean)
    findings = summary["findings"]
    assert set(findings["r1zero_language_consistency"]) == set(LANGS)
    for key in ("r1_language_consistency", "r1_minus_r1zero_pass@1", "distilled_minus_student_rl_pass@1"):
        assert isinstance(findings[key]["passed"], bool)
    compute = findings["distilled_minus_student_rl_pass@1"]
    assert compute["distill_flops"] > 0 and compute["student_rl_flops"] > 0
    assert summary["params"]["student_over_teacher_activated"] < 1
    premise = findings["teacher_minus_student_rl_pass@1"]  # the teacher must beat the student's own RL
    arms = summary["arms"]
    assert premise["difference"] == pytest.approx(
        arms["r1"]["all"]["pass@1"] - arms["student_rl"]["all"]["pass@1"]
    )
    assert [row["stage"] for row in summary["timeline"]] == list(STAGES[:-1])


def test_both_bases_end_on_the_same_share_of_direct_answers(run):
    """The student's shorter budget gets direct answers from the same share of it as the teacher's."""
    out, recipe = run[0].out_dir, R1Recipe.preset("smoke")
    teacher = json.loads((out / "pretrain" / "train_config.json").read_text())
    student = json.loads((out / "pretrain_student" / "train_config.json").read_text())
    assert teacher["direct_from"] == recipe.corpus.direct_from
    assert student["direct_from"] == recipe.student_corpus.direct_from != recipe.corpus.direct_from
    full = R1Recipe()
    shares = (
        full.student_corpus.direct_from / full.corpus.direct_from,
        full.student.tokens / full.teacher.tokens,
    )
    assert shares[0] == pytest.approx(shares[1], rel=0.01)


def test_student_rl_runs_in_chunks_up_to_its_cap(run):
    result = run[0]
    compute = json.loads((result.out_dir / "student_rl" / "compute.json").read_text())
    recipe = R1Recipe.preset("smoke")
    assert compute["steps"] <= recipe.student_rl_max_steps
    assert compute["flops"] >= compute["distill_flops"] or compute["steps"] == recipe.student_rl_max_steps


def test_bad_input_is_refused(run, tmp_path, capsys):
    from tinyseek.cli import main

    result = run[0]
    with pytest.raises(ValueError, match="is not empty"):
        run_r1(R1Recipe.preset("smoke"), result.out_dir)
    with pytest.raises(ValueError, match="another recipe or seed"):
        run_r1(R1Recipe.preset("smoke"), result.out_dir, seed=1, resume=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        run_r1(R1Recipe.preset("smoke"), tmp_path / "file")
    with pytest.raises(ValueError, match="unknown r1 recipe"):
        R1Recipe.preset("huge")
    with pytest.raises(ValueError, match="multiple of 6"):
        dataclasses.replace(R1Recipe.preset("smoke"), rl1=GRPORecipe(prompts_per_step=8))
    with pytest.raises(ValueError, match="mix.weights"):
        dataclasses.replace(R1Recipe.preset("smoke"), mix=dataclasses.replace(R1Recipe().mix, weights=(1, 2)))
    assert main(["r1", "--preset", "smoke", "--out", str(tmp_path / "x"), "--threads", "0"]) != 0
    assert "--threads 0: expected an integer >= 1" in capsys.readouterr().err


def test_cli_resume_prints_the_summary(run, capsys):
    from tinyseek.cli import main

    result = run[0]
    assert main(["r1", "--preset", "smoke", "--out", str(result.out_dir), "--resume", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipped (already done)") == len(STAGES)
    assert json.loads(captured.out)["arms"] == result.summary["arms"]
