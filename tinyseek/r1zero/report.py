"""report.md and PNG plots for an r1zero run: what pure GRPO did to a base model trained on flawed traces.

Design choices:
- The report is rendered only from what the pipeline measured and handed over: the GRPO run's
  metrics.jsonl (curves, read with `read_metrics`), two `EvalResult`s (base and RL model on the same
  held-out problems) and the stage timings. Nothing is recomputed here, so the report can be rebuilt
  from a finished run directory, and a figure in it is always one the run produced.
- Metric names come from `tinyseek.r1zero.metric_names`, the single place the GRPO loop also uses.
  A curve whose key is missing from every record is left out (a loop may not log the total reward);
  a log with none of the curves is an error, since the report would have nothing to show for RL.
- Plots use matplotlib's Agg backend (no display) through an explicit `Figure`, never pyplot's global
  state, so rendering is safe inside a library and in tests.
- The acceptance criteria (R1's pass@1 averaged over k samples and greedy accuracy each up by at least
  `MIN_GAIN` absolute per family; self-check share and mean length up) are checked and shown as a
  table, so a run states plainly whether it reproduced the R1-Zero effect.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyseek.r1zero.metric_names import ACCURACY, CURVES, LENGTH, SELF_CHECK
from tinyseek.r1zero.reading import READS_THE_OPERANDS
from tinyseek.train.metrics import read_metrics

REPORT_FILE = "report.md"
MIN_GAIN = 0.30  # absolute rise of pass@1 and greedy accuracy, per family, that the run must show
MIN_GAIN_CI = 0.20  # the low end of the gain's 95% interval must be above this
MIN_LENGTH_RATIO = 1.25  # mean response length at evaluation, RL over base
MIN_SELF_CHECK_GAIN = 0.10  # absolute rise of the self-checking share (besides doubling)
CURVE_FILE = "grpo_curves.png"
EVAL_FILE = "eval_base_vs_rl.png"
VALIDATION_FILE = "plots/validation_curves.png"


@dataclass(frozen=True)
class FamilyEval:
    """One task family's held-out accuracies: R1's pass@1 (mean over k samples) and greedy accuracy."""

    pass_at_1: float
    greedy: float
    problems: int


@dataclass(frozen=True)
class Sample:
    """One sampled completion shown in the report."""

    family: str
    prompt: str
    completion: str
    correct: bool


@dataclass(frozen=True)
class EvalResult:
    """A model's held-out evaluation: per-family accuracies and what its sampled completions look like.

    `self_check_share` and `length_mean` (tokens) are over the k sampled completions of every problem.
    """

    families: dict[str, FamilyEval]
    k: int
    temperature: float
    top_p: float
    self_check_share: float
    length_mean: float
    samples: list[Sample] = field(default_factory=list)
    # Share of the sampled completions that end right, among those that self-check and those that do
    # not (None when there are none of that kind): is checking *used*?
    checked_right: float | None = None
    unchecked_right: float | None = None

    def __post_init__(self) -> None:
        if not self.families:
            raise ValueError("EvalResult.families is empty: expected at least one task family")
        for name, family in self.families.items():
            for metric in ("pass_at_1", "greedy"):
                value = getattr(family, metric)
                if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                    raise ValueError(f"families[{name!r}].{metric} = {value!r}: expected a share in [0, 1]")

    def mean(self, metric: str) -> float:
        """Unweighted mean over families (each family counts the same, whatever its size)."""
        return sum(getattr(f, metric) for f in self.families.values()) / len(self.families)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        try:
            return cls(
                families={name: FamilyEval(**f) for name, f in data["families"].items()},
                k=data["k"],
                temperature=data["temperature"],
                top_p=data["top_p"],
                self_check_share=data["self_check_share"],
                length_mean=data["length_mean"],
                samples=[Sample(**s) for s in data.get("samples", [])],
                checked_right=data.get("checked_right"),
                unchecked_right=data.get("unchecked_right"),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"not an EvalResult record ({err!r}); expected the fields of to_dict()") from err

    @classmethod
    def load(cls, path: str | Path) -> EvalResult:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no evaluation result (expected JSON written by EvalResult.save)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: not JSON ({err.msg})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )


@dataclass(frozen=True)
class Criterion:
    """One acceptance check: what was measured (base and RL values), what was required, and the verdict."""

    name: str
    base: float
    rl: float
    required: str
    passed: bool
    unit: str = "share"  # "share" (shown in %) or "tokens"

    @property
    def gain(self) -> float:
        return self.rl - self.base


@dataclass(frozen=True)
class Curve:
    """Held-out validation figures at one GRPO step (T 0.6 samples), for the R1-paper curves."""

    step: int
    accuracy: float
    length: float
    self_check: float


def _at_least(value: float, bound: float) -> bool:
    # A value of exactly the bound passes; ">=" with no tolerance would fail it on rounding.
    return value >= bound - 1e-9


def acceptance(
    base: EvalResult,
    rl: EvalResult,
    curves: Sequence[Curve] = (),
    gain_ci: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    min_gain: float = MIN_GAIN,
) -> list[Criterion]:
    """The R1-Zero signatures, each a criterion (the README and issue #14 give the targets):

    - per family, pass@1 and greedy up by `min_gain` (and, given the per-problem bootstrap `gain_ci`
      as `{family: {"pass@1": (lo, hi), "greedy": (lo, hi)}}`, the interval's low end above
      `MIN_GAIN_CI`);
    - mean response length at evaluation up by `MIN_LENGTH_RATIO`, and still rising in the second half
      of RL: the last validation curve point above the mid-run one (when `curves` are given);
    - the self-checking share at least doubled and up by `MIN_SELF_CHECK_GAIN` absolute;
    - checked completions of the RL model right more often than its unchecked ones.
    """
    missing = sorted(set(base.families) ^ set(rl.families))
    if missing:
        raise ValueError(
            f"base and RL were evaluated on different families: {', '.join(missing)} in only one"
        )
    criteria = []
    for name in base.families:
        b, r = base.families[name], rl.families[name]
        for metric, label, low, high in (
            ("pass@1", f"{name} pass@1 (k={rl.k})", b.pass_at_1, r.pass_at_1),
            ("greedy", f"{name} greedy", b.greedy, r.greedy),
        ):
            required = f"≥ +{100 * min_gain:.0f} pts"
            passed = _at_least(high - low, min_gain)
            if gain_ci is not None:
                ci = gain_ci[name][metric]
                required += f", CI low > +{100 * MIN_GAIN_CI:.0f} ({100 * ci[0]:+.1f})"
                passed = passed and ci[0] > MIN_GAIN_CI
            criteria.append(Criterion(label, low, high, required, passed))
    criteria.append(
        Criterion(
            "mean length (tokens)", base.length_mean, rl.length_mean,
            f"≥ ×{MIN_LENGTH_RATIO:.2f}", _at_least(rl.length_mean, MIN_LENGTH_RATIO * base.length_mean),
            "tokens",
        )
    )  # fmt: skip
    if len(curves) >= 3:
        mid, last = curves[(len(curves) - 1) // 2], curves[-1]
        criteria.append(
            Criterion(
                f"length still rising (step {mid.step} → {last.step})", mid.length, last.length,
                "last > mid-run", last.length > mid.length, "tokens",
            )
        )  # fmt: skip
    share_ok = _at_least(rl.self_check_share, 2 * base.self_check_share) and _at_least(
        rl.self_check_share - base.self_check_share, MIN_SELF_CHECK_GAIN
    )
    criteria.append(
        Criterion(
            "self-checking share", base.self_check_share, rl.self_check_share,
            f"×2 and ≥ +{100 * MIN_SELF_CHECK_GAIN:.0f} pts", share_ok,
        )
    )  # fmt: skip
    if rl.checked_right is not None and rl.unchecked_right is not None:
        criteria.append(
            Criterion(
                "RL: right when checked vs unchecked", rl.unchecked_right, rl.checked_right,
                "checked > unchecked", rl.checked_right > rl.unchecked_right,
            )
        )  # fmt: skip
    return criteria


def grpo_curves(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per curve key (metric_names.CURVES), the steps that logged it and the values; absent keys omitted."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for key in CURVES:
        points = [
            (int(r["step"]), float(r[key]))
            for r in records
            if isinstance(r.get(key), (int, float)) and math.isfinite(float(r[key])) and "step" in r
        ]
        if points:
            curves[key] = ([s for s, _ in points], [v for _, v in points])
    if not curves:
        raise ValueError(f"the GRPO metrics log none of {', '.join(CURVES)}: nothing to plot")
    return curves


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def plot_curves(curves: Mapping[str, tuple[list[int], list[float]]], path: Path) -> Path:
    """One panel per GRPO curve, against the step."""
    figure = _figure(4.0 * len(curves), 3.2)
    for i, (key, (steps, values)) in enumerate(curves.items()):
        axes = figure.add_subplot(1, len(curves), i + 1)
        axes.plot(steps, values, marker="." if len(steps) < 40 else None)
        axes.set_xlabel("GRPO step")
        axes.set_title(CURVES[key])
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_eval(base: EvalResult, rl: EvalResult, path: Path) -> Path:
    """Grouped bars: base vs RL pass@1 and greedy accuracy per family."""
    names = list(base.families)
    figure = _figure(max(5.0, 2.2 * len(names) + 1.5), 3.4)
    for i, (metric, title) in enumerate(
        (("pass_at_1", f"pass@1 (k={rl.k}, T={rl.temperature})"), ("greedy", "greedy"))
    ):
        axes = figure.add_subplot(1, 2, i + 1)
        xs = range(len(names))
        axes.bar([x - 0.2 for x in xs], [getattr(base.families[n], metric) for n in names], 0.4, label="base")
        axes.bar([x + 0.2 for x in xs], [getattr(rl.families[n], metric) for n in names], 0.4, label="RL")
        axes.set_xticks(list(xs), names)
        axes.set_ylim(0, 1)
        axes.set_title(title)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_validation(curves: Mapping[str, Sequence[Curve]], path: Path) -> Path:
    """The R1 paper's three curves in miniature: held-out accuracy, response length and self-checking
    share (T 0.6 samples) against the GRPO step, one line per run (seed)."""
    figure = _figure(12.0, 3.4)
    panels = (
        ("accuracy", "validation accuracy (T 0.6)"),
        ("length", "mean response length (tokens)"),
        ("self_check", "self-checking share"),
    )
    for i, (attr, title) in enumerate(panels):
        axes = figure.add_subplot(1, 3, i + 1)
        for label, points in curves.items():
            axes.plot([p.step for p in points], [getattr(p, attr) for p in points], marker=".", label=label)
        axes.set_xlabel("GRPO step")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if len(curves) > 1:
            axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def _curve_table(curves: Sequence[Curve]) -> list[str]:
    rows = ["| step | accuracy | length (tokens) | self-checking |", "|---:|---:|---:|---:|"]
    rows += [f"| {c.step} | {_pct(c.accuracy)} | {c.length:.1f} | {_pct(c.self_check)} |" for c in curves]
    return rows


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _eval_table(base: EvalResult, rl: EvalResult) -> list[str]:
    rows = [
        "| family | problems | base pass@1 | RL pass@1 | Δ | base greedy | RL greedy | Δ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, b in base.families.items():
        r = rl.families[name]
        rows.append(
            f"| {name} | {r.problems} | {_pct(b.pass_at_1)} | {_pct(r.pass_at_1)} | "
            f"{100 * (r.pass_at_1 - b.pass_at_1):+.1f} | {_pct(b.greedy)} | {_pct(r.greedy)} | "
            f"{100 * (r.greedy - b.greedy):+.1f} |"
        )
    bp, rp, bg, rg = base.mean("pass_at_1"), rl.mean("pass_at_1"), base.mean("greedy"), rl.mean("greedy")
    rows.append(
        f"| **mean** | | {_pct(bp)} | {_pct(rp)} | {100 * (rp - bp):+.1f} | {_pct(bg)} | {_pct(rg)} | "
        f"{100 * (rg - bg):+.1f} |"
    )
    return rows


def _criteria_table(criteria: Sequence[Criterion]) -> list[str]:
    rows = ["| criterion | base | RL | gain | required | met |", "|---|---:|---:|---:|---|:---:|"]
    for c in criteria:
        share = c.unit == "share"
        fmt = _pct if share else (lambda x: f"{x:.1f}")
        gain = f"{100 * c.gain:+.1f} pts" if share else f"{c.gain:+.1f}"
        rows.append(
            f"| {c.name} | {fmt(c.base)} | {fmt(c.rl)} | {gain} | {c.required} | {'yes' if c.passed else 'NO'} |"
        )
    return rows


def _samples(title: str, samples: Sequence[Sample]) -> list[str]:
    lines = [f"### {title}", ""]
    if not samples:
        return [*lines, "(none recorded)", ""]
    for s in samples:
        verdict = "correct" if s.correct else "wrong"
        lines += [f"**{s.family}** ({verdict}): `{s.prompt}`", "", "```", s.completion.strip(), "```", ""]
    return lines


def _reading_lines(reading: Mapping[str, float]) -> list[str]:
    """Whether the base reads the question: the diagnosis to read first when RL gained little."""
    if not reading:
        return []
    shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in reading.items())
    lines = [f"Base reads the question's operands (digits copied right, teacher-forced): {shares}.", ""]
    if min(reading.values()) < READS_THE_OPERANDS:
        lines += [
            f"**The base has not learned to read the operands** (below {100 * READS_THE_OPERANDS:.0f}%): "
            "its traces start from misread digits, so RL has few right samples to select and little "
            "to gain. Pretrain on more tokens or try another seed before reading the RL figures.",
            "",
        ]
    return lines


def render_report(
    out_dir: str | Path,
    grpo_run_dir: str | Path,
    base: EvalResult,
    rl: EvalResult,
    timings: Mapping[str, float],
    recipe: Mapping[str, Any] | None = None,
    validation: Sequence[Curve] = (),
    gain_ci: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    reading: Mapping[str, float] | None = None,
) -> Path:
    """Write report.md and its PNGs into `out_dir`; returns the report's path.

    `timings` maps a stage name to seconds (e.g. pretrain, grpo, eval); `recipe` is shown as JSON
    (e.g. `dataclasses.asdict(Recipe)`), so the report says how its figures were obtained;
    `validation` is the held-out curve during GRPO and `gain_ci` the per-problem bootstrap intervals
    of the gains (see `acceptance`); `reading` the base's operand-reading share per family
    (tinyseek.r1zero.reading).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = read_metrics(grpo_run_dir)
    curves = grpo_curves(records)
    plot_curves(curves, out / CURVE_FILE)
    plot_eval(base, rl, out / EVAL_FILE)
    if validation:
        plot_validation({"run": validation}, out / VALIDATION_FILE)
    criteria = acceptance(base, rl, validation, gain_ci)
    met = all(c.passed for c in criteria)
    lines = [
        "# R1-Zero on a tiny model: pure GRPO from a base trained on flawed traces",
        "",
        f"**Result: {'all criteria met' if met else 'criteria NOT all met'}** "
        f"({sum(c.passed for c in criteria)}/{len(criteria)}).",
        "",
        *_reading_lines(reading or {}),
        "## Held-out accuracy, base vs RL",
        "",
        f"pass@1 is the mean correctness of k = {rl.k} samples per problem at temperature {rl.temperature}, "
        f"top-p {rl.top_p} (as R1 measures it); greedy is one temperature-0 completion per problem.",
        "",
        *_eval_table(base, rl),
        "",
        f"![base vs RL]({EVAL_FILE})",
        "",
        "## Acceptance",
        "",
        *_criteria_table(criteria),
        "",
        "## During GRPO",
        "",
        *(
            [
                "Held-out validation problems (not the test problems above), T 0.6:",
                "",
                f"![validation curves]({VALIDATION_FILE})",
                "",
                *_curve_table(validation),
                "",
                "The training samples (T 1):",
                "",
            ]
            if validation
            else []
        ),
        f"![GRPO curves]({CURVE_FILE})",
        "",
        "| curve | first step | last step |",
        "|---|---:|---:|",
        *(f"| {CURVES[k]} | {v[0]:.3f} | {v[-1]:.3f} |" for k, (_, v) in curves.items()),
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()),
        f"| **total** | {sum(timings.values()):.1f} |",
        "",
        "## Completions",
        "",
        *_samples("Base model", base.samples),
        *_samples("After GRPO", rl.samples),
    ]
    if recipe is not None:
        lines += ["## Recipe", "", "```json", json.dumps(recipe, indent=2, default=str), "```", ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


__all__ = [
    "ACCURACY",
    "LENGTH",
    "MIN_GAIN",
    "SELF_CHECK",
    "Criterion",
    "Curve",
    "EvalResult",
    "FamilyEval",
    "Sample",
    "acceptance",
    "grpo_curves",
    "render_report",
]
