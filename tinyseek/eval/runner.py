"""Evaluate a model the way the R1 report does: k samples per problem, pass@1 averaged over them, cons@k.

    sets = problem_sets(["addition", "gcd"], n=500)            # tinyseek.eval.problems
    report = evaluate(llm, sets, k=4, template="r1zero")       # one batched generate call
    print(report.markdown()); json.dumps(report.to_json())

The one evaluator: `evaluate` (the CLI, the R1-Zero pipeline), `evaluate_endpoint` (any server) and
GRPO's periodic `evaluate_prompts` all score completions through `judge`.

Design choices:
- Every request of the run (k samples for each problem of every family, plus one temperature-0 sample
  per problem with `greedy=True`) goes to the engine in ONE `generate` call, so continuous batching
  keeps the batch full until the last problem and the k samples of a problem share its cached prompt.
- Reproducible: the k samples of a problem are one request with `n=k` and a seed derived from
  (seed, task, canonical problem, language), so a problem gets the same samples whatever else is
  evaluated with it and in whatever order (the engine gives completion i the seed + i).
- Templates (tinyseek.tasks.completion): `r1zero`, the R1-Zero plain-text template for base models
  (format style `think_answer`), stops at `</answer>` as the GRPO rollouts of that template do, and
  the stop string (whichever of `stop` the decoded tokens show) is put back so the format check and
  the SFT traces see it; `chat`, the R1 chat template (format style `think`). The default is `chat`
  when the tokenizer carries a chat template, else `r1zero`.
- Scoring is the RL reward's: the task's verifier on the answer section (the text after `</think>`, or
  the whole completion when the reasoning was never closed), the format check, reasoning length in
  tokens of the model's tokenizer, and R1's language consistency (share of the reasoning's words in
  the prompt's language), all from tinyseek.tasks.
  A task with `score_many` (coding: sandboxed test runs) scores a family's completions in one call.
- Votes for cons@k group answers by exact value when they are numbers (`0.5` and `1/2` agree), else
  by the stripped text.
- Metrics come per family and overall (all problems pooled, so a family counts by its size).
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyseek.eval.metrics import SampleResult, summarize
from tinyseek.eval.problems import ProblemSet
from tinyseek.inference.llm import LLM
from tinyseek.inference.request import CompletionOutput, text_with_stop
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.tasks import Problem, Task
from tinyseek.tasks.answer import extract_answer, format_number, parse_number
from tinyseek.tasks.completion import (
    TEMPLATE_STOPS,
    TEMPLATE_STYLES,
    FormatStyle,
    PromptItem,
    Template,
    check_template,
    default_template,
    parse_completion,
    render_prompt,
)
from tinyseek.tasks.language import language_share

log = logging.getLogger(__name__)

# GRPO's periodic evaluation samples at R1's recommended settings beside its greedy pass.
EVAL_TEMPERATURE = 0.6
EVAL_TOP_P = 0.95


def run_settings(
    sets: Sequence[ProblemSet],
    k: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    template: str,
    style: str,
    stops: Sequence[str],
    seed: int,
    greedy: bool,
) -> dict[str, Any]:
    """What an evaluation asked for, as its report records it (in-process and endpoint alike)."""
    return {
        "k": k,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "template": template,
        "format_style": style,
        "stop": stops,
        "seed": seed,
        "greedy": greedy,
        "tasks": [s.name for s in sets],
        "langs": sorted({s.lang for s in sets}),
    }


@dataclass(frozen=True)
class Sample:
    """One completion and how it scored."""

    text: str
    answer: str | None
    correct: bool
    well_formed: bool
    reasoning_tokens: int
    completion_tokens: int
    finish_reason: str | None
    language: float | None = None  # share of the reasoning in the prompt's language; None: no evidence


@dataclass
class ProblemRecord:
    """A problem, the prompt the model saw, and its samples (plus the greedy one when asked)."""

    task: str
    canonical: str
    reference: str
    lang: str
    prompt: str
    samples: list[Sample]
    greedy: Sample | None = None

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        if self.greedy is None:
            del row["greedy"]
        return row


@dataclass
class EvalReport:
    """Metrics per family and overall, the settings that produced them, and the per-problem records."""

    settings: dict[str, Any]
    families: dict[str, dict[str, float]]
    overall: dict[str, float]
    records: list[ProblemRecord] = field(default_factory=list)
    seconds: float = 0.0
    generated_tokens: int = 0
    usage: dict[str, float] | None = None  # an endpoint's token counts (and cost), when evaluated over HTTP

    def to_json(self, include_records: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; per-problem records only when asked (they are large)."""
        out: dict[str, Any] = {
            "settings": self.settings,
            "overall": self.overall,
            "families": self.families,
            "seconds": self.seconds,
            "generated_tokens": self.generated_tokens,
            "tokens_per_second": self.generated_tokens / self.seconds if self.seconds > 0 else None,
        }
        if self.usage is not None:
            out["usage"] = self.usage
        if include_records:
            out["records"] = [r.to_json() for r in self.records]
        return out

    def markdown(self) -> str:
        """One row per family (and an `all` row when there are several), one column per metric."""
        k = self.settings["k"]
        columns = [
            ("problems", "problems", "{:.0f}"),
            ("pass@1", "pass@1", "{:.3f}"),
            (f"pass@{k}", f"pass@{k}", "{:.3f}"),
            (f"cons@{k}", f"cons@{k}", "{:.3f}"),
            ("format", "format_rate", "{:.3f}"),
            ("reasoning tok", "reasoning_tokens", "{:.1f}"),
            ("truncated", "truncated", "{:.3f}"),
        ]
        if self.settings.get("greedy"):
            columns.append(("greedy", "greedy_accuracy", "{:.3f}"))
        rows = list(self.families.items())
        if len(rows) > 1:
            rows.append(("all", self.overall))
        if all("language_consistency" in metrics for _, metrics in rows):
            columns.append(("language", "language_consistency", "{:.3f}"))
        lines = [
            "| task | " + " | ".join(title for title, _, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for name, metrics in rows:
            cells = [fmt.format(metrics[key]) for _, key, fmt in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        s = self.settings
        lines.append(
            f"\nk={k}, temperature {s['temperature']}, top-p {s['top_p']}, max {s['max_tokens']} tokens, "
            f"template {s['template']}, seed {s['seed']}; {self.generated_tokens} tokens in "
            f"{self.seconds:.1f}s"
        )
        if self.usage is not None:
            u = self.usage
            cost = f", cost ${u['cost']:.4f}" if "cost" in u else ""
            lines.append(
                f"usage: {u['prompt_tokens']:.0f} prompt tokens ({u['cached_tokens']:.0f} cached), "
                f"{u['completion_tokens']:.0f} completion tokens ({u['reasoning_tokens']:.0f} reasoning) "
                f"over {u['requests']:.0f} requests{cost}"
            )
        return "\n".join(lines)


def problem_seed(seed: int, problem: Problem, lang: str) -> int:
    """A per-problem sampling seed that does not depend on what else is evaluated, in which order, or
    where a benchmark file lives (`problem.task` is the family name, or the style of a file)."""
    digest = hashlib.sha256(f"{seed}:{problem.task}:{problem.canonical}:{lang}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def vote_key(answer: str) -> str:
    """Numbers vote by exact value (`0.5` = `1/2`), anything else by its stripped text."""
    value = parse_number(answer)
    return format_number(value) if value is not None else answer.strip()


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False)) if text else 0

    return count


def _score(task: Task, problems: Sequence[Problem], sections: Sequence[str]) -> list[float]:
    score_many = getattr(task, "score_many", None)
    if callable(score_many):
        return [float(s) for s in score_many(list(problems), list(sections))]
    return [float(task.score(p, s)) for p, s in zip(problems, sections, strict=True)]


def judge(
    task: Task,
    problems: Sequence[Problem],
    texts: Sequence[str],
    style: FormatStyle,
    lang: str,
    completion_tokens: Sequence[int],
    finish_reasons: Sequence[str | None],
    reasoning_tokens: Callable[[int, str], int],
) -> list[Sample]:
    """Verify, parse and measure completions of one family (problems[i] is the problem of texts[i]).

    Shared by the in-process and the endpoint evaluations so both score a text the same way; only
    where the token counts come from differs (`reasoning_tokens(i, reasoning_text)`: a tokenizer, or
    a server's `usage`).
    """
    parsed = [parse_completion(t, style) for t in texts]
    sections = [t if p.answer is None else p.answer for t, p in zip(texts, parsed, strict=True)]
    scores = _score(task, problems, sections)
    return [
        Sample(
            text=text,
            answer=extract_answer(section),
            correct=score >= 1.0,
            well_formed=p.well_formed,
            reasoning_tokens=reasoning_tokens(i, p.reasoning),
            completion_tokens=length,
            finish_reason=finish,
            language=language_share(p.reasoning, lang),
        )
        for i, (text, section, score, p, length, finish) in enumerate(
            zip(texts, sections, scores, parsed, completion_tokens, finish_reasons, strict=True)
        )
    ]


def family_metrics(records: Sequence[ProblemRecord], k: int) -> dict[str, float]:
    """summarize()'s metrics (reasoning length in tokens) plus truncation, completion length, language
    consistency (when any reasoning has words) and greedy accuracy (when sampled)."""
    results = [
        [SampleResult(s.correct, s.answer, s.well_formed, s.reasoning_tokens) for s in r.samples]
        for r in records
    ]
    metrics = summarize(results, k, key=vote_key)
    metrics["reasoning_tokens"] = metrics.pop("reasoning_length")
    flat = [s for r in records for s in r.samples]
    metrics["completion_tokens"] = statistics.fmean(s.completion_tokens for s in flat)
    metrics["truncated"] = statistics.fmean(s.finish_reason == "length" for s in flat)
    shares = [s.language for s in flat if s.language is not None]
    if shares:  # R1's language-consistency measure; absent when no reasoning held any word
        metrics["language_consistency"] = statistics.fmean(shares)
    greedy = [r.greedy for r in records if r.greedy is not None]
    if greedy:
        metrics["greedy_accuracy"] = statistics.fmean(g.correct for g in greedy)
    return metrics


def check_sets(sets: ProblemSet | Sequence[ProblemSet], k: int) -> list[ProblemSet]:
    """What every evaluation asks of its request: k >= 1 and distinct, non-empty problem sets."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k = {k!r}: expected an integer >= 1 (samples per problem)")
    sets = [sets] if isinstance(sets, ProblemSet) else list(sets)
    if not sets or any(not s.problems for s in sets):
        empty = [s.name for s in sets if not s.problems]
        raise ValueError(f"nothing to evaluate: no problem sets, or sets with no problems {empty}")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"task families must be distinct, got {names}")
    return sets


def family_records(
    problem_set: ProblemSet, prompts: Sequence[str], samples: Iterator[Sample], k: int, greedy: bool
) -> list[ProblemRecord]:
    """One record per problem of a family from its judged samples, in order (k each, then the greedy one)."""
    return [
        ProblemRecord(
            task=problem_set.name,
            canonical=problem.canonical,
            reference=problem.answer,
            lang=problem_set.lang,
            prompt=prompt,
            samples=[next(samples) for _ in range(k)],
            greedy=next(samples) if greedy else None,
        )
        for problem, prompt in zip(problem_set.problems, prompts, strict=True)
    ]


def evaluate(
    llm: LLM | str | Path,
    sets: ProblemSet | Sequence[ProblemSet],
    k: int = 4,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_tokens: int = 512,
    template: Template | None = None,
    seed: int = 0,
    greedy: bool = False,
    stop: Sequence[str] | None = None,
) -> EvalReport:
    """Sample k completions per problem (one batched call), verify them, and report R1's metrics.

    `template=None` picks `default_template(llm.tokenizer)`; `stop=None` the template's stop strings.
    """
    sets = check_sets(sets, k)
    sampling = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=k)
    llm = llm if isinstance(llm, LLM) else LLM(llm)
    tokenizer = llm.tokenizer
    if tokenizer is None:
        raise ValueError("evaluation needs an LLM with a tokenizer (prompts and answers are text)")
    template = check_template(template) if template is not None else default_template(tokenizer)
    stops = list(TEMPLATE_STOPS[template] if stop is None else stop)
    style = TEMPLATE_STYLES[template]

    prompts: list[list[int]] = []
    params: list[SamplingParams] = []
    for problem_set in sets:
        for problem in problem_set.problems:
            _, ids = render_prompt(tokenizer, problem_set.task.prompt(problem, problem_set.lang), template)
            seeded = problem_seed(seed, problem, problem_set.lang)
            prompts.append(ids)
            params.append(
                SamplingParams(
                    max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=k, seed=seeded, stop=stops
                )
            )
            if greedy:
                prompts.append(ids)
                params.append(SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=stops))
    log.info(
        "evaluating %d problems x %d samples%s (%s template)",
        sum(len(s.problems) for s in sets), k, " + greedy" if greedy else "", template,
    )  # fmt: skip
    start = time.perf_counter()
    outputs = iter(llm.generate(prompts, params))
    seconds = time.perf_counter() - start

    count = token_counter(tokenizer)
    eos_ids = set(llm.engine.eos_token_ids)
    records: list[ProblemRecord] = []
    families: dict[str, dict[str, float]] = {}
    generated = 0
    for problem_set in sets:
        requests = [(next(outputs), next(outputs) if greedy else None) for _ in problem_set.problems]
        flat_problems: list[Problem] = []
        flat_outputs: list[CompletionOutput] = []
        for problem, (sampled, greedy_out) in zip(problem_set.problems, requests, strict=True):
            extra = [] if greedy_out is None else greedy_out.outputs[:1]
            flat_outputs += [*sampled.outputs, *extra]
            flat_problems += [problem] * (len(sampled.outputs) + len(extra))
        generated += sum(len(o.token_ids) for o in flat_outputs)
        texts = [text_with_stop(o, stops, eos_ids, tokenizer) for o in flat_outputs]
        judged = judge(
            problem_set.task, flat_problems, texts, style, problem_set.lang,
            [len(o.token_ids) for o in flat_outputs], [o.finish_reason for o in flat_outputs],
            lambda _, reasoning: count(reasoning),
        )  # fmt: skip
        shown = [
            tokenizer.decode(sampled.prompt_token_ids, skip_special_tokens=False) for sampled, _ in requests
        ]
        family = family_records(problem_set, shown, iter(judged), k, greedy)
        families[problem_set.name] = family_metrics(family, k)
        records += family
    settings = run_settings(
        sets, k, sampling.temperature, sampling.top_p, max_tokens, template, style, stops, seed, greedy
    )
    report = EvalReport(settings, families, family_metrics(records, k), records, seconds, generated)
    log.info(
        "pass@1 %.3f, cons@%d %.3f, format %.3f over %d problems (%.1fs)",
        report.overall["pass@1"], k, report.overall[f"cons@{k}"], report.overall["format_rate"],
        len(records), seconds,
    )  # fmt: skip
    return report


def evaluate_prompts(
    llm: LLM, items: Sequence[PromptItem], style: FormatStyle, max_tokens: int, seeds: Sequence[int]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """GRPO's periodic evaluation: greedy and sampled (T = 0.6, top-p 0.95, `seeds[i]` for item i)
    accuracy on fixed, already rendered problems; returns the metrics and one row per completion.

    Both passes end at EOS or `max_tokens`, with no template stop, so successive evaluations of a run
    (and of runs before this evaluator was shared) compare alike."""
    if not items:
        raise ValueError("evaluate_prompts needs at least one problem")
    modes = {
        "greedy": [SamplingParams(max_tokens=max_tokens, temperature=0.0)] * len(items),
        "sampled": [
            SamplingParams(max_tokens=max_tokens, temperature=EVAL_TEMPERATURE, top_p=EVAL_TOP_P, seed=seed)
            for seed in seeds
        ],
    }
    count = token_counter(llm.tokenizer)
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    for mode, params in modes.items():
        outputs = [out.outputs[0] for out in llm.generate([item.token_ids for item in items], params)]
        samples = [
            judge(item.task, [item.problem], [out.text], style, item.lang, [len(out.token_ids)],
                  [out.finish_reason], lambda _, reasoning: count(reasoning))[0]
            for item, out in zip(items, outputs, strict=True)
        ]  # fmt: skip
        metrics[f"eval/{mode}_accuracy"] = statistics.fmean(s.correct for s in samples)
        metrics[f"eval/{mode}_length"] = statistics.fmean(s.completion_tokens for s in samples)
        rows += [
            {"mode": mode, "task": item.task.name, "question": item.question, "reference": item.problem.answer,
             "completion": s.text, "finish_reason": s.finish_reason, "tokens": s.completion_tokens,
             "score": float(s.correct)}
            for item, s in zip(items, samples, strict=True)
        ]  # fmt: skip
    metrics["eval/problems"] = float(len(items))
    return metrics, rows
