"""Periodic evaluation during GRPO: greedy and sampled accuracy on held-out (test-split) problems.

Design choices:
- The problems are fixed for the whole run (the first N of the test split, round-robin over tasks), so
  successive evaluations compare the same questions.
- Two numbers, as R1 reports them: greedy accuracy (temperature 0, the majority behaviour) and sampled
  accuracy at R1's recommended temperature 0.6, top-p 0.95 (seeded, so reruns match).
- Scoring is the task's own verifier on the answer section (`accuracy_reward`), the same rule the
  accuracy reward trains on. Every completion is returned as a row for the run's samples JSONL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyseek.inference.llm import LLM
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.rl.prompts import PromptItem
from tinyseek.rl.rewards import accuracy_reward
from tinyseek.rl.rollout import request_seed, task_score
from tinyseek.rl.think_format import FormatStyle

EVAL_TEMPERATURE = 0.6
EVAL_TOP_P = 0.95


@dataclass
class EvalResult:
    metrics: dict[str, float]
    rows: list[dict[str, Any]]


def evaluate(
    llm: LLM, items: list[PromptItem], style: FormatStyle, max_new_tokens: int, seed: int = 0
) -> EvalResult:
    """Greedy and sampled (T = 0.6, top-p 0.95) accuracy of the policy on `items`."""
    if not items:
        raise ValueError("evaluate needs at least one problem")
    score = accuracy_reward(task_score, column="task_problem", style=style)
    metrics: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    modes = {
        "greedy": [SamplingParams(max_tokens=max_new_tokens, temperature=0.0)] * len(items),
        "sampled": [
            SamplingParams(
                max_tokens=max_new_tokens,
                temperature=EVAL_TEMPERATURE,
                top_p=EVAL_TOP_P,
                seed=request_seed(seed, -1 - i),
            )
            for i in range(len(items))
        ],
    }
    for mode, params in modes.items():
        outputs = llm.generate([item.token_ids for item in items], params)
        texts = [out.text for out in outputs]
        scores = score(
            [item.question for item in items],
            texts,
            task_problem=[(item.task, item.problem) for item in items],
        )
        values = [0.0 if s is None else s for s in scores]
        metrics[f"eval/{mode}_accuracy"] = sum(values) / len(values)
        metrics[f"eval/{mode}_length"] = sum(len(out.token_ids) for out in outputs) / len(outputs)
        for item, out, value in zip(items, outputs, values, strict=True):
            rows.append(
                {
                    "mode": mode,
                    "task": item.task.name,
                    "question": item.question,
                    "reference": item.problem.answer,
                    "completion": out.text,
                    "finish_reason": out.finish_reason,
                    "tokens": len(out.token_ids),
                    "score": value,
                }
            )
    metrics["eval/problems"] = float(len(items))
    return EvalResult(metrics, rows)


def write_samples(path: str | Path, step: int, rows: list[dict[str, Any]]) -> Path:
    """One JSON line per completion, tagged with the step (an evaluation's file is written whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({"step": step, **row}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
