"""Rule-based rewards (no reward model) and the weighted set the GRPO loop calls.

A reward function is any callable `f(prompts, completions, **columns) -> list[float | None]`, one value
per completion. `columns` carries per-completion data from the rollout: `problem` (a task's Problem),
`answer` (a reference string), `lang`, `completion_lengths` (tokens), ... A function takes what it
needs and ignores the rest.

`None` means "not applicable" (no reference for this row, no language evidence in the reasoning). It is
left out of that reward's logged mean and std, and counts as 0 in the weighted total: the total stays a
plain weighted sum, and a row cannot earn a reward that does not apply to it.

Built-ins (R1 uses accuracy + format, and language consistency for R1's second RL stage; DAPO adds
overlong shaping), each built from a `RewardOptions` by name in `BUILTIN_REWARDS`:
- `accuracy`: `score(reference, answer_text)` on the answer section (the text after `</think>`, or the
  whole completion when the reasoning was never closed, so accuracy and format stay separate signals).
  A task's verifier fits as `score=task.score` with the `problem` column; `math_verify_score` compares
  with a reference string (symbolic equivalence through math-verify).
- `format`: 1 when the completion follows the style (`think` for the R1 chat template, whose forced
  `<think>\\n` counts as the opening tag; `think_answer` for the R1-Zero tags), else 0.
- `language`: share of the reasoning's words in the prompt's language (the `lang` column, else detected
  from the prompt), see `tinyseek.tasks.language`.
- `overlong`: DAPO's soft overlong punishment from the `completion_lengths` column.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinyseek.tasks.completion import FormatStyle, check_style, parse_completion
from tinyseek.tasks.language import detect_language, language_share

RewardFn = Callable[..., Sequence[float | None]]
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def overlong_penalty(length: int, max_len: int, cache: int) -> float:
    """DAPO soft overlong punishment: 0 up to `max_len - cache` tokens, then linearly down to -1 at `max_len`."""
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong cache {cache} must be in (0, max_len = {max_len}]")
    if length < 0:
        raise ValueError(f"length must be >= 0 tokens, got {length}")
    start = max_len - cache
    if length <= start:
        return 0.0
    if length >= max_len:
        return -1.0
    return (start - length) / cache


def math_verify_score(reference: str, completion: str) -> float:
    """1.0 when the completion's answer equals `reference` symbolically (math-verify), else 0.0.

    The last `<answer>...</answer>` is read when present (math-verify does not look inside tags),
    else math-verify extracts from the text (`\\boxed{}`, `$...$`, a final expression). Its parse
    timeout uses SIGALRM, which only the main thread may set, so other threads parse without one.
    """
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    tags = _ANSWER_TAG.findall(completion)
    candidate = tags[-1] if tags else completion
    gold = parse(reference, parsing_timeout=timeout) or parse(f"${reference}$", parsing_timeout=timeout)
    guess = parse(candidate, parsing_timeout=timeout)
    return 1.0 if gold and guess and verify(gold, guess, timeout_seconds=timeout) else 0.0


def _column(columns: Mapping[str, Any], name: str, size: int, reward: str) -> Sequence[Any]:
    if name not in columns:
        raise ValueError(f"the {reward} reward needs the column {name!r}; got columns {sorted(columns)}")
    values = columns[name]
    if len(values) != size:
        raise ValueError(f"column {name!r} has {len(values)} values for {size} completions")
    return values


def accuracy_reward(
    score: Callable[[Any, str], float], column: str = "problem", style: FormatStyle = "think"
) -> RewardFn:
    """`score(columns[column][i], answer_section_i)`; None where the reference is None."""
    check_style(style)

    def accuracy(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        references = _column(columns, column, len(completions), "accuracy")
        rewards: list[float | None] = []
        for reference, completion in zip(references, completions, strict=True):
            if reference is None:
                rewards.append(None)
                continue
            answer = parse_completion(completion, style).answer
            rewards.append(float(score(reference, completion if answer is None else answer)))
        return rewards

    return accuracy


def format_reward(style: FormatStyle = "think") -> RewardFn:
    """1.0 for a completion that follows `style` exactly (see `tinyseek.tasks.completion`), else 0.0."""
    check_style(style)

    def format_(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        return [1.0 if parse_completion(c, style).well_formed else 0.0 for c in completions]

    return format_


def language_reward(style: FormatStyle = "think") -> RewardFn:
    """Share of the reasoning in the prompt's language (`lang` column, else detected); None if undecidable."""
    check_style(style)

    def language(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        langs = (
            _column(columns, "lang", len(completions), "language")
            if "lang" in columns
            else [None] * len(prompts)
        )
        rewards: list[float | None] = []
        for prompt, completion, lang in zip(prompts, completions, langs, strict=True):
            target = lang or detect_language(prompt)
            reasoning = parse_completion(completion, style).reasoning
            rewards.append(None if target is None else language_share(reasoning, target))
        return rewards

    return language


def overlong_reward(max_len: int, cache: int) -> RewardFn:
    """`overlong_penalty` of each completion's token count (column `completion_lengths`)."""
    overlong_penalty(0, max_len, cache)  # validates the parameters now, not at the first batch

    def overlong(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
        lengths = _column(columns, "completion_lengths", len(completions), "overlong")
        return [overlong_penalty(int(n), max_len, cache) for n in lengths]

    return overlong


@dataclass(frozen=True)
class RewardOptions:
    """What the built-in rewards are built from (only the fields a chosen reward needs must be set)."""

    score: Callable[[Any, str], float] | None = None
    score_column: str = "problem"
    style: FormatStyle = "think"
    max_len: int | None = None
    overlong_cache: int = 0


def _build_accuracy(options: RewardOptions) -> RewardFn:
    if options.score is None:
        raise ValueError(
            "the accuracy reward needs RewardOptions.score (a task's score or math_verify_score)"
        )
    return accuracy_reward(options.score, options.score_column, options.style)


def _build_overlong(options: RewardOptions) -> RewardFn:
    if options.max_len is None:
        raise ValueError("the overlong reward needs RewardOptions.max_len (L_max in tokens)")
    return overlong_reward(options.max_len, options.overlong_cache)


BUILTIN_REWARDS: dict[str, Callable[[RewardOptions], RewardFn]] = {
    "accuracy": _build_accuracy,
    "format": lambda options: format_reward(options.style),
    "language": lambda options: language_reward(options.style),
    "overlong": _build_overlong,
}


@dataclass(frozen=True)
class RewardFunction:
    """A named reward with its weight in the total."""

    name: str
    fn: RewardFn
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"reward name {self.name!r} must be non-empty and contain no '/'")
        if not math.isfinite(self.weight):
            raise ValueError(f"reward {self.name!r}: weight must be finite, got {self.weight}")


@dataclass
class RewardScores:
    """Each reward's values (None = not applicable) and the weighted total per completion."""

    total: list[float]
    values: dict[str, list[float | None]]
    weights: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """`reward/NAME/mean`, `/std` and `/applicable` (share of non-None) per reward, and the total's."""
        out: dict[str, float] = {}
        series: list[tuple[str, list[float | None]]] = [*self.values.items(), ("total", list(self.total))]
        for name, values in series:
            applicable = [v for v in values if v is not None]
            out[f"reward/{name}/mean"] = statistics.fmean(applicable) if applicable else 0.0
            out[f"reward/{name}/std"] = statistics.pstdev(applicable) if applicable else 0.0
            if name != "total":
                out[f"reward/{name}/applicable"] = len(applicable) / len(values) if values else 0.0
        return out


class RewardSet:
    """An ordered registry of named, weighted reward functions."""

    def __init__(self, rewards: Iterable[RewardFunction] = ()) -> None:
        self._rewards: dict[str, RewardFunction] = {}
        for reward in rewards:
            self.add(reward.name, reward.fn, reward.weight)

    @classmethod
    def from_weights(cls, weights: Mapping[str, float], options: RewardOptions | None = None) -> RewardSet:
        """Built-in rewards by name (see `BUILTIN_REWARDS`) with their weights."""
        options = options or RewardOptions()
        rewards = RewardSet()
        for name, weight in weights.items():
            if name not in BUILTIN_REWARDS:
                raise ValueError(f"unknown reward {name!r}; expected one of {', '.join(BUILTIN_REWARDS)}")
            rewards.add(name, BUILTIN_REWARDS[name](options), weight)
        return rewards

    def add(self, name: str, fn: RewardFn, weight: float = 1.0) -> RewardSet:
        """Register `fn` under `name` (unique); returns self so calls chain."""
        if name in self._rewards:
            raise ValueError(f"a reward named {name!r} is already registered")
        self._rewards[name] = RewardFunction(name, fn, float(weight))
        return self

    @property
    def names(self) -> list[str]:
        return list(self._rewards)

    def __len__(self) -> int:
        return len(self._rewards)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardScores:
        """Every reward on every completion, and the weighted total (None counts as 0)."""
        if not self._rewards:
            raise ValueError("the reward set is empty; add at least one reward")
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        total = [0.0] * len(completions)
        values: dict[str, list[float | None]] = {}
        for reward in self._rewards.values():
            got = list(reward.fn(prompts, completions, **columns))
            if len(got) != len(completions):
                raise ValueError(
                    f"reward {reward.name!r} returned {len(got)} values for {len(completions)} completions"
                )
            for i, value in enumerate(got):
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(
                        f"reward {reward.name!r} gave {value!r} at index {i}; expected a finite number or None"
                    )
                total[i] += reward.weight * value
            values[reward.name] = [None if v is None else float(v) for v in got]
        return RewardScores(
            total=total, values=values, weights={r.name: r.weight for r in self._rewards.values()}
        )


def parse_reward_weights(spec: str) -> dict[str, float]:
    """`"accuracy=1,format=0.5"` -> `{"accuracy": 1.0, "format": 0.5}` (a bare name has weight 1)."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, weight = item.partition("=")
        name = name.strip()
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError as err:
            raise ValueError(
                f"reward weight {weight!r} for {name!r} is not a number (expected NAME=WEIGHT)"
            ) from err
        if not name or not math.isfinite(value):
            raise ValueError(f"bad reward spec item {item!r}; expected NAME=WEIGHT with a finite weight")
        if name in weights:
            raise ValueError(f"reward {name!r} appears twice in {spec!r}")
        weights[name] = value
    if not weights:
        raise ValueError(f"empty reward spec {spec!r}; expected e.g. 'accuracy=1,format=0.5'")
    return weights
