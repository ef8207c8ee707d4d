"""report.md and its plots from a real metrics.jsonl and two evaluation results."""

import json

import pytest

from tinyseek.r1zero.metric_names import ACCURACY, LENGTH, SELF_CHECK
from tinyseek.r1zero.report import (
    CURVE_FILE,
    EVAL_FILE,
    VALIDATION_FILE,
    Curve,
    EvalResult,
    FamilyEval,
    Sample,
    acceptance,
    grpo_curves,
    render_report,
)
from tinyseek.train.metrics import MetricsLogger

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval(
    add: tuple[float, float],
    mul: tuple[float, float],
    share: float,
    length: float,
    checked: tuple[float | None, float | None] = (None, None),
) -> EvalResult:
    return EvalResult(
        families={
            "addition": FamilyEval(pass_at_1=add[0], greedy=add[1], problems=500),
            "multiplication": FamilyEval(pass_at_1=mul[0], greedy=mul[1], problems=500),
        },
        k=4,
        temperature=0.6,
        top_p=0.95,
        self_check_share=share,
        length_mean=length,
        samples=[Sample("addition", "What is 1 + 2?", " <think>\n1+2=3, write 3.\n</think>", True)],
        checked_right=checked[0],
        unchecked_right=checked[1],
    )


@pytest.fixture
def grpo_run(tmp_path):
    run = tmp_path / "grpo"
    with MetricsLogger(run, tensorboard=False) as log:
        for step in range(1, 6):
            log.log(
                step, {ACCURACY: 0.4 + 0.1 * step, LENGTH: 40.0 + step, SELF_CHECK: 0.2 * step, "other": "x"}
            )
    return run


def test_report_shows_measured_figures_and_writes_pngs(tmp_path, grpo_run):
    base = _eval((0.50, 0.45), (0.45, 0.38), share=0.08, length=41.5)
    rl = _eval((0.91, 0.88), (0.86, 0.80), share=0.97, length=63.2, checked=(0.95, 0.6))
    validation = [Curve(0, 0.3, 40.0, 0.1), Curve(10, 0.6, 55.0, 0.5), Curve(20, 0.9, 60.0, 0.9)]
    path = render_report(
        tmp_path / "out", grpo_run, base, rl, {"pretrain": 270.0, "grpo": 200.5}, {"lr": 1e-4}, validation
    )
    text = path.read_text()
    assert "all criteria met" in text and "NOT" not in text
    # Per-family row: base and RL pass@1 and greedy with their gains in points.
    assert "| addition | 500 | 50.0% | 91.0% | +41.0 | 45.0% | 88.0% | +43.0 |" in text
    assert "| **total** | 470.5 |" in text
    assert "| self-checking share | 8.0% | 97.0% | +89.0 pts | ×2 and ≥ +10 pts | yes |" in text
    assert "| mean length (tokens) | 41.5 | 63.2 | +21.7 | ≥ ×1.25 | yes |" in text
    assert "| length still rising (step 10 → 20) | 55.0 | 60.0 | +5.0 | last > mid-run | yes |" in text
    assert (
        "| RL: right when checked vs unchecked | 60.0% | 95.0% | +35.0 pts | checked > unchecked | yes |"
        in text
    )
    assert "| 10 | 60.0% | 55.0 | 50.0% |" in text  # the validation curve's table
    assert (tmp_path / "out" / VALIDATION_FILE).read_bytes()[:8] == PNG_MAGIC
    assert '"lr": 0.0001' in text
    for name in (CURVE_FILE, EVAL_FILE):
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in text


def test_acceptance_fails_a_family_that_gains_too_little(grpo_run, tmp_path):
    base = _eval((0.50, 0.45), (0.45, 0.38), share=0.08, length=41.5)
    rl = _eval((0.91, 0.88), (0.70, 0.80), share=0.97, length=50.0)
    failed = {c.name for c in acceptance(base, rl) if not c.passed}
    assert failed == {"multiplication pass@1 (k=4)", "mean length (tokens)"}  # +25 pts; ×1.20
    text = render_report(tmp_path / "out", grpo_run, base, rl, {"grpo": 1.0}).read_text()
    assert "criteria NOT all met" in text and "(4/6)" in text


def test_acceptance_checks_each_signature_of_r1_zero():
    base = _eval((0.2, 0.1), (0.2, 0.1), share=0.10, length=40.0)
    good = _eval((0.8, 0.8), (0.8, 0.8), share=0.30, length=60.0, checked=(0.9, 0.5))
    assert all(c.passed for c in acceptance(base, good))
    # The share must double AND rise by 10 points: 0.10 -> 0.19 does neither, 0.04 -> 0.10 only doubles.
    assert not _passed(acceptance(base, _eval((0.8, 0.8), (0.8, 0.8), 0.19, 60.0)), "self-checking share")
    low = _eval((0.2, 0.1), (0.2, 0.1), share=0.04, length=40.0)
    assert not _passed(acceptance(low, _eval((0.8, 0.8), (0.8, 0.8), 0.10, 60.0)), "self-checking share")
    # Checking must be used: checked completions right more often than unchecked ones.
    unused = _eval((0.8, 0.8), (0.8, 0.8), 0.30, 60.0, checked=(0.7, 0.8))
    assert not _passed(acceptance(base, unused), "RL: right when checked vs unchecked")
    # Length must still be rising in the second half: the last point above the mid-run one.
    flat = [Curve(0, 0.2, 40.0, 0.1), Curve(10, 0.7, 62.0, 0.3), Curve(20, 0.8, 61.0, 0.3)]
    assert not _passed(acceptance(base, good, flat), "length still rising (step 10 → 20)")
    # A gain of +30 whose bootstrap interval reaches below +20 fails.
    wide = {name: {"pass@1": (0.15, 0.45), "greedy": (0.5, 0.9)} for name in ("addition", "multiplication")}
    ok = {name: {"pass@1": (0.5, 0.7), "greedy": (0.5, 0.9)} for name in ("addition", "multiplication")}
    assert not _passed(acceptance(base, good, gain_ci=wide), "addition pass@1 (k=4)")
    assert _passed(acceptance(base, good, gain_ci=ok), "addition pass@1 (k=4)")


def _passed(criteria, name: str) -> bool:
    (match,) = [c for c in criteria if c.name == name]
    return match.passed


def test_exact_required_gain_passes():
    base = _eval((0.5, 0.4), (0.5, 0.4), share=0.1, length=40)
    rl = _eval((0.8, 0.7), (0.8, 0.7), share=0.2, length=50)
    assert all(c.passed for c in acceptance(base, rl))


def test_curves_skip_absent_keys_and_reject_a_log_without_any(tmp_path, grpo_run):
    curves = grpo_curves([{"step": 1, ACCURACY: 0.5}, {"step": 2, ACCURACY: 0.75, LENGTH: 50}])
    assert curves[ACCURACY] == ([1, 2], [0.5, 0.75]) and curves[LENGTH] == ([2], [50.0])
    assert SELF_CHECK not in curves
    with pytest.raises(ValueError, match="nothing to plot"):
        grpo_curves([{"step": 1, "loss": 0.1}])


def test_eval_result_round_trip_and_bad_input(tmp_path):
    result = _eval((0.5, 0.4), (0.6, 0.3), share=0.1, length=40)
    result.save(tmp_path / "eval.json")
    assert EvalResult.load(tmp_path / "eval.json") == result
    with pytest.raises(FileNotFoundError, match="missing.json"):
        EvalResult.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"families": {}')
    with pytest.raises(ValueError, match="bad.json:1"):
        EvalResult.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="expected the fields"):
        EvalResult.from_dict({"families": {}})
    data = json.loads((tmp_path / "eval.json").read_text())
    data["families"]["addition"]["greedy"] = 1.5
    with pytest.raises(ValueError, match=r"families\['addition'\].greedy = 1.5"):
        EvalResult.from_dict(data)


def test_base_and_rl_must_cover_the_same_families():
    base = _eval((0.5, 0.4), (0.6, 0.3), share=0.1, length=40)
    rl = EvalResult({"addition": FamilyEval(0.9, 0.9, 500)}, 4, 0.6, 0.95, 0.5, 50.0)
    with pytest.raises(ValueError, match="multiplication in only one"):
        acceptance(base, rl)
