"""The R1 arm's SFT data: rejection-sampled traces in the paper's readable shape, per language.

- `rejection_traces` samples a model on train-split problems in every language (the same
  `tinyseek.eval.evaluate` as every evaluation, so "kept" means "counted correct, well formed and
  language-consistent by the evaluation") and keeps them with `tinyseek.eval.rejection.traces_of`.
- A kept trace gets R1's readable shape: the reasoning, then a one-line summary in the prompt's
  language, then the answer. The summary restates the question with its result (`Combien font
  17+61 ? 78.`): words the corpus taught in every language. A first version said `So the answer is
  78.` / `Donc la réponse est 78.` / `所以答案是78。`, words the tokenizer had never seen (split into
  bytes): the SFT'd models wrote `onc the answer is 18` under French prompts, which cost the R1 arm
  language consistency (fr 89%, zh 87% of the reasoning) and accuracy (a summary's wrong number
  became the answer). The r1zero format allows nothing between `</think>` and `<answer>`, so the
  summary closes the reasoning; a trace that already ends with one is left alone.
- The cold start tops a language up with the task's own worked solutions (no slips) when sampling
  kept fewer than its quota (`TraceRecipe.fill_from_solutions`); each row says where it came from
  (`source`: the model's name or `solution`), and `counts` reports both per language.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tinyseek.chat_template import THINK_CLOSE, r1_zero_completion, r1_zero_prompt
from tinyseek.eval.problems import problem_sets
from tinyseek.eval.rejection import traces_of
from tinyseek.eval.sharded import evaluate_sharded
from tinyseek.r1.recipe import TraceRecipe
from tinyseek.tasks import ReasoningTask, get_task

SUMMARY = {"en": "{question} {answer}.", "fr": "{question} {answer}.", "zh": "{question}{answer}。"}
TEMPLATE = "r1zero"


def with_summary(completion: str, question: str, answer: str, lang: str) -> str:
    """`completion` with the summary line (the question and its answer) at the end of its reasoning, once."""
    line = SUMMARY[lang].format(question=question, answer=answer)
    head, closed, tail = completion.rpartition(THINK_CLOSE)
    if not closed or head.rstrip().endswith(line):
        return completion
    return f"{head.rstrip()}\n{line}\n{closed}{tail}"


def solution_trace(
    task_name: str, problem: Any, lang: str, self_check_rate: float, rng: random.Random
) -> dict[str, Any]:
    """A worked solution of the task (no slips) as a trace row, summary included."""
    task = get_task(task_name)
    if not isinstance(task, ReasoningTask):
        raise ValueError(f"task {task_name!r} has no worked traces; the cold start needs a ReasoningTask")
    trace = task.trace(problem, lang, 0.0, self_check_rate, rng=rng)
    completion = r1_zero_completion(trace.reasoning, trace.answer)
    question = task.prompt(problem, lang)
    return {
        "prompt": r1_zero_prompt(question),
        "completion": with_summary(completion, question, trace.answer, lang),
        "task": task_name,
        "canonical": problem.canonical,
        "answer": problem.answer,
        "lang": lang,
        "template": TEMPLATE,
        "source": "solution",
    }


def rejection_traces(
    llm: Any,
    recipe: TraceRecipe,
    tasks: Sequence[str],
    langs: Sequence[str],
    difficulty: int,
    self_check_rate: float,
    seed: int,
    source: str,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Kept traces of every language and, per language, how many were sampled, kept and filled in."""
    rows: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    for lang in langs:
        sets = problem_sets(list(tasks), recipe.problems, seed, difficulty, "train", lang)
        report = evaluate_sharded(
            llm,
            sets,
            k=recipe.k,
            temperature=0.6,
            top_p=0.95,
            max_tokens=recipe.max_new_tokens,
            template=TEMPLATE,
            seed=seed,
        )
        questions = {(s.name, p.canonical): s.task.prompt(p, lang) for s in sets for p in s.problems}
        kept: list[dict[str, Any]] = []
        covered = set()
        for record in report.records:
            question = questions[record.task, record.canonical]
            for row in traces_of(record, TEMPLATE, recipe.per_prompt, recipe.min_language):
                row["completion"] = with_summary(row["completion"], question, str(row["answer"]), lang)
                kept.append({**row, "source": source})
                covered.add((record.task, record.canonical))
        filled: list[dict[str, Any]] = []
        if recipe.fill_from_solutions:
            rng = random.Random(f"cold-start:{seed}:{lang}")
            quota = recipe.problems * len(tasks)
            for problem_set in sets:
                for problem in problem_set.problems:
                    if len(kept) + len(filled) >= quota:
                        break
                    if (problem_set.name, problem.canonical) not in covered:
                        filled.append(solution_trace(problem_set.name, problem, lang, self_check_rate, rng))
        counts[lang] = {
            "problems": len(report.records),
            "samples": sum(len(r.samples) for r in report.records),
            "kept": len(kept),
            "filled": len(filled),
        }
        rows += kept + filled
    return rows, counts
