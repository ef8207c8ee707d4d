"""Prompts for GRPO: problems from tasks or JSONL files, rendered with the R1-Zero or the R1 chat template.

Design choices:
- A `PromptSource` is an endless, reproducible stream: each task's `sample(seed, difficulty, split)`
  stream, interleaved round-robin when several tasks are named (`addition,countdown`), so every step
  sees a fixed mix. Several prompt languages (`lang="en,fr,zh"`) take turns after each round of the
  tasks, so a multilingual run sees every (task, language) pair equally. Its only state is the number
  of prompts drawn, which a checkpoint stores; resuming replays the streams to that point (cheap:
  problems are generated, not trained on).
- Two templates (tinyseek.tasks.completion): `r1zero`, the plain-text R1-Zero preamble for base
  models (format style `think_answer`), and `chat`, the R1 chat template (format style `think`).
- A benchmark file as the training task (`gsm8k:PATH`, `math:PATH`) is split by hash like procedural
  tasks; a separate evaluation file (`eval_task`) is test data as a whole, and the training file is then
  train data as a whole.
- Prompt tokens are computed once here (the engine and the trainer both take ids), so a prompt that
  cannot fit the context with `max_new_tokens` is a clear error before any sampling.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from tinyseek.tasks import FileTask, Problem, Split, Task, completion, get_task
from tinyseek.tasks.base import check_language
from tinyseek.tasks.completion import PromptItem, Template
from tinyseek.tasks.datasets import STYLES


def parse_tasks(spec: str, split: Split | None = None) -> list[Task]:
    """`"addition,countdown"` or `"gsm8k:PATH"` -> tasks; a file gets `split` as its whole split if given."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError(f"empty task spec {spec!r}; expected e.g. 'addition,countdown' or 'gsm8k:PATH'")
    tasks: list[Task] = []
    for name in names:
        style, sep, path = name.partition(":")
        if sep and style in STYLES and split is not None:
            tasks.append(FileTask(path, style, split))  # type: ignore[arg-type]
        else:
            tasks.append(get_task(name))
    return tasks


class PromptSource:
    """An endless, resumable stream of rendered prompts drawn round-robin from `tasks` (and from the
    comma-separated languages of `lang`)."""

    def __init__(
        self,
        tasks: Sequence[Task],
        tokenizer: Any,
        template: Template = "r1zero",
        split: Split = "train",
        seed: int = 0,
        difficulty: int = 1,
        lang: str = "en",
        max_prompt_tokens: int | None = None,
    ) -> None:
        if not tasks:
            raise ValueError("PromptSource needs at least one task")
        self.tasks = list(tasks)
        self.tokenizer = tokenizer
        self.template = completion.check_template(template)
        self.split: Split = split
        self.seed = seed
        self.difficulty = difficulty
        self.langs = [check_language(code.strip()) for code in lang.split(",")]
        self.max_prompt_tokens = max_prompt_tokens
        self.drawn = 0
        self._stream = self._items()

    @property
    def style(self) -> completion.FormatStyle:
        """The format style the completions of this template follow (for the format reward)."""
        return completion.TEMPLATE_STYLES[self.template]

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings of this template's completions."""
        return completion.TEMPLATE_STOPS[self.template]

    def _items(self) -> Iterator[tuple[Task, Problem, str]]:
        streams = [task.sample(self.seed, self.difficulty, self.split) for task in self.tasks]
        for index in itertools.count():
            task = self.tasks[index % len(self.tasks)]
            lang = self.langs[index // len(self.tasks) % len(self.langs)]
            yield task, next(streams[index % len(streams)]), lang

    def render(self, task: Task, problem: Problem, lang: str) -> PromptItem:
        question = task.prompt(problem, lang)
        text, ids = completion.render_prompt(self.tokenizer, question, self.template)
        if self.max_prompt_tokens is not None and len(ids) > self.max_prompt_tokens:
            raise ValueError(
                f"task {task.name}: a prompt of {len(ids)} tokens exceeds the {self.max_prompt_tokens} the "
                f"context leaves after max_new_tokens (problem {problem.canonical[:60]!r})"
            )
        return PromptItem(task, problem, question, text, ids, lang)

    def take(self, n: int) -> list[PromptItem]:
        """The next `n` prompts."""
        items = [self.render(*next(self._stream)) for _ in range(n)]
        self.drawn += n
        return items

    def skip_to(self, drawn: int) -> None:
        """Restart the streams and advance them past `drawn` prompts (resuming a run)."""
        self._stream = self._items()
        for _ in range(drawn):
            next(self._stream)
        self.drawn = drawn
