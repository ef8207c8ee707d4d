"""Evaluation metrics as the R1 report measures them.

- `pass_at_k(n, c, k)`: the unbiased estimator of Chen et al. (2021), `1 - C(n-c, k) / C(n, k)`, in the
  numerically stable product form `1 - prod_{i=n-c+1}^{n} (1 - k/i)` (no huge binomials).
- pass@1 "averaged over k samples" (R1: temperature 0.6, top-p 0.95) is the mean correctness of all
  samples of a problem, which equals `pass_at_k(n, c, 1) = c/n`.
- cons@k: majority vote over the extracted answers of the first k samples. Samples with no answer do
  not vote. Answers are grouped by `key(answer)` (default: the stripped string), so a caller can merge
  equivalent forms (`0.5`, `1/2`). Ties are broken by the earliest sample: among the tied answers, the
  one whose first occurrence comes first in sampling order wins. The vote is correct when the winning
  answer's earliest sample was verified correct: the verifier is deterministic in the answer, so any
  sample carrying the same answer would do, and no second verification is needed.
- Format-compliance rate and mean reasoning length are plain means over all samples;
  `SampleResult.from_completion` reads both off the text with the rewards' parser (reasoning length in
  characters by default, in tokens when given a token counter).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tinyseek.tasks.completion import FormatStyle, parse_completion


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"correct count c = {c} must be in [0, n = {n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k = {k} must be in [1, n = {n}] (need at least k samples)")
    if n - c < k:
        return 1.0
    failure = 1.0
    for i in range(n - c + 1, n + 1):
        failure *= 1.0 - k / i
    return 1.0 - failure


def mean_pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems, each with its own list of per-sample correctness."""
    if not correct:
        raise ValueError("no problems to average over")
    return statistics.fmean(pass_at_k(len(samples), sum(map(bool, samples)), k) for samples in correct)


def majority_vote(answers: Sequence[str | None], key: Callable[[str], str] = str.strip) -> int | None:
    """Index of the sample whose answer wins the vote (earliest first occurrence breaks ties); None if no votes."""
    votes: dict[str, int] = {}
    first_index: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        group = key(answer)
        votes[group] = votes.get(group, 0) + 1
        first_index.setdefault(group, i)
    if not votes:
        return None
    winner = max(votes, key=lambda group: (votes[group], -first_index[group]))
    return first_index[winner]


@dataclass(frozen=True)
class SampleResult:
    """One sampled completion, already verified and parsed."""

    correct: bool
    answer: str | None
    well_formed: bool
    reasoning_length: int

    @classmethod
    def from_completion(
        cls,
        completion: str,
        correct: bool,
        answer: str | None,
        style: FormatStyle = "think",
        count: Callable[[str], int] = len,
    ) -> SampleResult:
        """Format compliance and reasoning length read off the text; `count` is e.g. a token counter."""
        parsed = parse_completion(completion, style)
        return cls(
            correct=correct,
            answer=answer,
            well_formed=parsed.well_formed,
            reasoning_length=count(parsed.reasoning),
        )


def cons_at_k(
    samples: Sequence[Sequence[SampleResult]], k: int, key: Callable[[str], str] = str.strip
) -> float:
    """Share of problems whose majority answer over the first k samples is correct (no votes = wrong)."""
    if not samples:
        raise ValueError("no problems to evaluate")
    hits = 0
    for problem in samples:
        if len(problem) < k:
            raise ValueError(f"cons@{k} needs at least {k} samples per problem, got {len(problem)}")
        first_k = problem[:k]
        winner = majority_vote([s.answer for s in first_k], key)
        hits += winner is not None and first_k[winner].correct
    return hits / len(samples)


def summarize(
    samples: Sequence[Sequence[SampleResult]], k: int, key: Callable[[str], str] = str.strip
) -> dict[str, float]:
    """pass@1 (mean over samples), pass@k, cons@k, format-compliance rate and mean reasoning length."""
    if not samples or any(len(problem) < k for problem in samples):
        raise ValueError(f"need at least one problem and at least k = {k} samples for each")
    flat = [s for problem in samples for s in problem]
    correct = [[s.correct for s in problem] for problem in samples]
    return {
        "problems": float(len(samples)),
        "samples": float(len(flat)),
        "pass@1": mean_pass_at_k(correct, 1),
        f"pass@{k}": mean_pass_at_k(correct, k),
        f"cons@{k}": cons_at_k(samples, k, key),
        "format_rate": statistics.fmean(s.well_formed for s in flat),
        "reasoning_length": statistics.fmean(s.reasoning_length for s in flat),
    }
