"""Training documents: task worked solutions and JSONL files, as (prompt, completion) text pairs.

Design choices:
- A `Document` is text, not ids: a prompt (never trained on in SFT; empty for plain pretraining text)
  and a completion, plus `source` ("FILE:LINE" or "task addition #12") so that a document that cannot
  be used (too long for the context in SFT) is reported where it came from.
- Task documents come from the train split only, round-robin over every (task, language) pair, each
  pair with its own reproducible problem stream and trace RNG; the test split feeds held-out eval.
  `lang_weights` makes the mix uneven, as real corpora are (a language of weight w comes up w times
  per cycle, spread evenly); `code_switch_rate` writes that share of the non-English documents'
  worked solutions in English under their own question, the code-switching of web text, so that
  reasoning in the prompt's language is a behaviour a model can lose or keep. Both draw on their own
  schedule and RNG: a language's documents are the same whatever the weights and the rate.
- Three task formats: `r1zero` (the R1-Zero plain-text template: what the base model of the R1-Zero
  stage is pretrained on; `preamble_share` < 1 keeps the constant ~90-token preamble on only that share
  of documents, the rest start at `User:`, so pretraining tokens go to worked solutions while the model
  still learns to read the preamble that RL and eval prompts carry; the draw has its own RNG, so the
  traces are the same whatever the share), `chat` (R1's chat template: user turn, then `<｜Assistant｜><think>\\n`, the
  completion being the reasoning, `</think>` and the answer) and `plain` (question, newline, worked
  solution). Documents carry no BOS/EOS: the packer adds the ids, so no format can forget them.
- JSONL files are read whole and validated up front: `{"text"}` (pretraining), `{"prompt",
  "completion"}` (SFT / distillation traces, e.g. rejection-sampling output) or `{"messages"}` (chat:
  every turn but the last is prompt, the last must be the assistant's and is the completion). An empty
  file, a broken line or a record of none of these shapes is a ValueError naming FILE:LINE.
- Files hold out every `HOLDOUT_EVERY`-th record for evaluation when they have at least that many.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinyseek.chat_template import (
    R1_ZERO_TEMPLATE,
    THINK_CLOSE,
    THINK_OPEN,
    r1_zero_completion,
    r1_zero_prompt,
    render_chat,
)
from tinyseek.tasks.base import Split

DocFormat = Literal["r1zero", "chat", "plain"]
DOC_FORMATS: tuple[DocFormat, ...] = ("r1zero", "chat", "plain")
HOLDOUT_EVERY = 20
# The R1-Zero template without its preamble: the question turn a `preamble_share` < 1 document starts with.
R1_ZERO_QUESTION = R1_ZERO_TEMPLATE[R1_ZERO_TEMPLATE.index("User: ") :]


@dataclass(frozen=True)
class Document:
    prompt: str  # not trained on in SFT (only the completion is)
    completion: str
    source: str  # where it came from, for error messages: "task addition #12", "FILE:LINE"


@dataclass(frozen=True)
class TaskSpec:
    """What task documents to render (the `--task` family of flags)."""

    names: tuple[str, ...]
    doc_format: DocFormat = "r1zero"
    langs: tuple[str, ...] = ("en",)
    difficulty: int = 1
    error_rate: float = 0.0
    self_check_rate: float = 0.0
    direct_rate: float = 0.0  # share of documents that answer without reasoning (ReasoningTask.trace)
    # Direct answers start at this document (counted over all streams): a corpus that teaches the
    # worked solutions first, so that the skill emerges within a small budget, then mixes them in.
    direct_from: int = 0
    preamble_share: float = 1.0  # r1zero only: share of documents that carry the template's preamble
    lang_weights: tuple[int, ...] = ()  # documents per cycle of each of `langs` (empty: one each)
    code_switch_rate: float = 0.0  # share of non-English documents whose worked solution is in English

    def __post_init__(self) -> None:
        for name in ("preamble_share", "code_switch_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"TaskSpec.{name} = {value!r}: expected a share in [0, 1]")
        if self.lang_weights and (
            len(self.lang_weights) != len(self.langs) or any(w < 1 for w in self.lang_weights)
        ):
            raise ValueError(
                f"TaskSpec.lang_weights = {self.lang_weights!r}: expected one integer >= 1 per language "
                f"of {self.langs!r}, or none"
            )


def language_cycle(langs: Sequence[str], weights: Sequence[int] = ()) -> list[str]:
    """One cycle of the language schedule: `weights[i]` turns of `langs[i]`, spread evenly (each
    language's turns at (j + 1/2) / w of the cycle, ties in the order given)."""
    weights = list(weights) or [1] * len(langs)
    turns = [((j + 0.5) / w, i) for i, w in enumerate(weights) for j in range(w)]
    return [langs[i] for _, i in sorted(turns)]


def _split_solution(solution: str) -> tuple[str, str]:
    """(reasoning, answer) of a `Task.solution` text, which ends in <answer>...</answer>."""
    reasoning, _, tail = solution.rpartition("<answer>")
    return reasoning.strip(), tail.removesuffix("</answer>").strip()


def render_task_document(
    prompt: str, reasoning: str, answer: str, doc_format: str, source: str, preamble: bool = True
) -> Document:
    """One worked solution in one of DOC_FORMATS (`preamble=False`: r1zero without its preamble)."""
    if doc_format == "r1zero":
        head = r1_zero_prompt(prompt) if preamble else R1_ZERO_QUESTION.format(prompt=prompt)
        return Document(head, r1_zero_completion(reasoning, answer), source)
    if doc_format == "chat":
        head = render_chat([{"role": "user", "content": prompt}], add_generation_prompt=True, bos_token="")
        return Document(head, f"{reasoning}\n{THINK_CLOSE}\n<answer>{answer}</answer>", source)
    if doc_format == "plain":
        return Document(prompt + "\n", f"{reasoning}\n<answer>{answer}</answer>", source)
    raise ValueError(f"unknown document format {doc_format!r}; expected one of {', '.join(DOC_FORMATS)}")


def task_documents(spec: TaskSpec, seed: int, split: Split = "train") -> Iterator[Document]:
    """An endless, reproducible stream of worked solutions, round-robin over tasks and languages."""
    from tinyseek.tasks import ReasoningTask, get_task

    if not spec.names:
        raise ValueError("no task given: expected at least one task name")
    if spec.doc_format not in DOC_FORMATS:
        raise ValueError(f"unknown document format {spec.doc_format!r}; expected one of {DOC_FORMATS}")
    streams = {}
    for name in spec.names:
        task = get_task(name)
        for lang in spec.langs:
            problems = task.sample(seed=seed, difficulty=spec.difficulty, split=split)
            rng = random.Random(f"trace:{seed}:{name}:{lang}:{split}")
            streams[name, lang] = (task, problems, rng)
    schedule = [(name, lang) for name in spec.names for lang in language_cycle(spec.langs, spec.lang_weights)]
    preambles = random.Random(f"preamble:{seed}:{split}")
    switches = random.Random(f"switch:{seed}:{split}")
    for n in itertools.count():
        name, lang = schedule[n % len(schedule)]
        task, problems, rng = streams[name, lang]
        preamble = spec.preamble_share >= 1.0 or preambles.random() < spec.preamble_share
        problem = next(problems)
        switched = lang != "en" and spec.code_switch_rate > 0 and switches.random() < spec.code_switch_rate
        worked_in = "en" if switched else lang
        if isinstance(task, ReasoningTask):
            direct_rate = spec.direct_rate if n >= spec.direct_from else 0.0
            trace = task.trace(
                problem, worked_in, spec.error_rate, spec.self_check_rate, rng=rng, direct_rate=direct_rate
            )
            reasoning, answer = trace.reasoning, trace.answer
        else:
            reasoning, answer = _split_solution(task.solution(problem, worked_in))
        yield render_task_document(
            task.prompt(problem, lang), reasoning, answer, spec.doc_format, f"task {name} #{n}", preamble
        )


def _record_document(record: object, where: str) -> Document:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if isinstance(record.get("text"), str):
        return Document("", record["text"], where)
    if isinstance(record.get("prompt"), str) and isinstance(record.get("completion"), str):
        return Document(record["prompt"], record["completion"], where)
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if (
            not isinstance(last, dict)
            or last.get("role") != "assistant"
            or not isinstance(last.get("content"), str)
        ):
            raise ValueError(f"{where}: the last message must be the assistant's, with string content")
        try:
            head = render_chat(messages[:-1], add_generation_prompt=True, bos_token="")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        completion = last["content"].removeprefix(THINK_OPEN).removeprefix("\n")
        if THINK_CLOSE not in completion:  # a plain answer: close the opened think block empty
            completion = f"{THINK_CLOSE}\n{completion}"
        return Document(head, completion, where)
    raise ValueError(
        f"{where}: expected {{'text'}}, {{'prompt', 'completion'}} (strings) or a non-empty "
        f"{{'messages'}} list; found keys {sorted(record)}"
    )


def read_jsonl_documents(path: str | Path) -> list[Document]:
    """Every record of a JSONL file as a Document; the first bad line is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    documents = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            documents.append(_record_document(record, where))
    if not documents:
        raise ValueError(f"{path}: no records (empty file); expected JSONL, one JSON object a line")
    return documents


def split_holdout(documents: Sequence[Document]) -> tuple[list[Document], list[Document]]:
    """(train, held-out): every HOLDOUT_EVERY-th record is held out when there are enough."""
    if len(documents) < HOLDOUT_EVERY:
        return list(documents), []
    train = [d for i, d in enumerate(documents) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    held = [d for i, d in enumerate(documents) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    return train, held


def file_documents(documents: Sequence[Document], seed: int) -> Iterator[Document]:
    """Endless epochs over a fixed list, each shuffled by (seed, epoch)."""
    for epoch in itertools.count():
        order = list(range(len(documents)))
        random.Random(f"epoch:{seed}:{epoch}").shuffle(order)
        for i in order:
            yield documents[i]
