"""Rejection sampling (R1's stage 3): keep the sampled traces that verify correct and are well formed.

    report = evaluate(llm, problem_sets(["addition"], n=2000, split="train"), k=8)
    traces, summary = select_traces(report, max_per_prompt=4)
    write_traces("traces.jsonl", traces)

Design choices:
- Sampling is `tinyseek.eval.runner.evaluate`: the same batched generate call, the same verifier and
  format check, so "kept" means exactly "counted correct and well formed by the evaluation".
- `min_language` (R1's third filter, for the cold start and its rejection sampling) also drops a
  sample whose reasoning is less than that share in the prompt's language, or has no language
  evidence at all (a direct answer).
- Identical completions of a prompt are kept once (a duplicate only reweights SFT data); then at most
  `max_per_prompt` are kept, in sampling order, so the choice is reproducible with the seed.
- Each kept trace is one JSONL row `{"prompt", "completion", ...}`: `prompt` is the exact text the model
  saw, special tokens included (BOS, and for the chat template `<｜User｜>`, `<｜Assistant｜><think>\\n`),
  to be encoded WITHOUT adding special tokens; `completion` is the generated text after it, without
  EOS (an SFT trainer appends its EOS). Extra fields (task, canonical, answer = the reference,
  model_answer, lang, template, token counts) are for filtering and inspection.
- The file is written atomically (temporary sibling, then one rename).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.checkpoint.run import write_text_atomically
from tinyseek.eval.runner import EvalReport, ProblemRecord


@dataclass(frozen=True)
class RejectionSummary:
    """How much of the sampled data survived the filter."""

    prompts: int
    samples: int
    prompts_kept: int
    samples_kept: int
    correct: int
    well_formed: int
    accepted: int  # correct and well formed, before deduplication and the per-prompt cap
    duplicates: int

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def traces_of(
    record: ProblemRecord, template: str, max_per_prompt: int | None = None, min_language: float | None = None
) -> list[dict[str, Any]]:
    """The kept traces of one problem: correct, well formed, at least `min_language` of the reasoning
    in the prompt's language (when given), deduplicated, at most `max_per_prompt`."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for sample in record.samples:
        if not (sample.correct and sample.well_formed) or sample.text in seen:
            continue
        if min_language is not None and (sample.language is None or sample.language < min_language):
            continue
        seen.add(sample.text)
        if max_per_prompt is not None and len(rows) >= max_per_prompt:
            continue
        rows.append(
            {
                "prompt": record.prompt,
                "completion": sample.text,
                "task": record.task,
                "canonical": record.canonical,
                "answer": record.reference,
                "model_answer": sample.answer,
                "lang": record.lang,
                "template": template,
                "reasoning_tokens": sample.reasoning_tokens,
                "completion_tokens": sample.completion_tokens,
            }
        )
    return rows


def select_traces(
    report: EvalReport | Sequence[ProblemRecord],
    max_per_prompt: int | None = None,
    template: str | None = None,
) -> tuple[list[dict[str, Any]], RejectionSummary]:
    """Kept traces of every problem, and counts of what was sampled and kept."""
    if max_per_prompt is not None and (isinstance(max_per_prompt, bool) or max_per_prompt < 1):
        raise ValueError(f"max_per_prompt = {max_per_prompt!r}: expected an integer >= 1, or None for no cap")
    if isinstance(report, EvalReport):
        records: Sequence[ProblemRecord] = report.records
        template = template or str(report.settings["template"])
    else:
        records = report
    if template is None:
        raise ValueError("template: give the template the records were sampled with (r1zero or chat)")
    traces: list[dict[str, Any]] = []
    prompts_kept = duplicates = 0
    samples = [s for r in records for s in r.samples]
    for record in records:
        kept = traces_of(record, template, max_per_prompt)
        accepted = [s.text for s in record.samples if s.correct and s.well_formed]
        duplicates += len(accepted) - len(set(accepted))
        prompts_kept += bool(kept)
        traces += kept
    summary = RejectionSummary(
        prompts=len(records),
        samples=len(samples),
        prompts_kept=prompts_kept,
        samples_kept=len(traces),
        correct=sum(s.correct for s in samples),
        well_formed=sum(s.well_formed for s in samples),
        accepted=sum(s.correct and s.well_formed for s in samples),
        duplicates=duplicates,
    )
    return traces, summary


def write_traces(path: str | Path, traces: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line, written atomically."""
    write_text_atomically(path, "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in traces))
