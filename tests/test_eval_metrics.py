"""pass@k against exact enumeration of subsets, cons@k voting and its tie-breaking, and the summary."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from tinyseek.eval import SampleResult, cons_at_k, majority_vote, mean_pass_at_k, pass_at_k, summarize


def _exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Share of the k-subsets of n samples (the first c correct) that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in subset) for subset in subsets), len(subsets))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(_exact_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    # C(200, 100) overflows a float; the product form stays exact to rounding.
    n, c, k = 200, 3, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_1_is_the_mean_over_samples():
    correct = [[True, False, False, False], [True, True, True, False], [False] * 4]
    assert mean_pass_at_k(correct, 1) == pytest.approx((0.25 + 0.75 + 0.0) / 3)
    assert mean_pass_at_k(correct, 4) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)


def test_majority_vote_counts_and_tie_breaking():
    assert majority_vote(["3", "5", "5", "3", "5"]) == 1  # "5" wins 3-2; its first sample is index 1
    # Tie 2-2: the answer whose first occurrence is earliest wins ("7" at index 1 before "9" at 2).
    assert majority_vote([None, "7", "9", "9", "7"]) == 1
    assert majority_vote(["9", "7", "7", "9"]) == 0
    # Samples without an answer do not vote; no votes at all gives None.
    assert majority_vote([None, None, "4"]) == 2
    assert majority_vote([None, None]) is None
    # The default key strips whitespace; a custom key merges equivalent forms.
    assert majority_vote(["1/2", " 3 ", "3"]) == 1
    assert majority_vote(["0.5", "3", "1/2", "3", "2/4"], key=lambda a: str(Fraction(a))) == 0


def _sample(answer: str | None, correct: bool) -> SampleResult:
    return SampleResult(correct=correct, answer=answer, well_formed=answer is not None, reasoning_length=10)


def test_cons_at_k_uses_first_k_samples_and_vote_correctness():
    problems = [
        # k = 3: "5" (correct) wins 2-1; k = 2 and k = 4 tie, and "5" came first.
        [_sample("5", True), _sample("4", False), _sample("5", True), _sample("4", False)],
        # k = 2: a 1-1 tie that the earlier "4" (wrong) wins; k = 3, 4: "5" wins.
        [_sample("4", False), _sample("5", True), _sample("5", True), _sample("5", True)],
        # No sample answered: counts as wrong.
        [_sample(None, False)] * 4,
    ]
    assert cons_at_k(problems, k=3) == pytest.approx(2 / 3)
    assert cons_at_k(problems, k=2) == pytest.approx(1 / 3)
    assert cons_at_k(problems, k=4) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 5 samples"):
        cons_at_k(problems, k=5)


def test_summarize():
    problems = [
        [
            SampleResult(True, "5", True, 10),
            SampleResult(False, "4", True, 20),
            SampleResult(True, "5", False, 30),
            SampleResult(False, None, False, 40),
        ],
        [
            SampleResult(False, "1", True, 50),
            SampleResult(False, "2", True, 60),
            SampleResult(False, "1", True, 70),
            SampleResult(False, "3", True, 80),
        ],
    ]
    got = summarize(problems, k=4)
    assert got == pytest.approx(
        {
            "problems": 2,
            "samples": 8,
            "pass@1": (0.5 + 0.0) / 2,
            "pass@4": 0.5,
            "cons@4": 0.5,
            "format_rate": 6 / 8,
            "reasoning_length": 45.0,
        }
    )
    with pytest.raises(ValueError, match="k = 5"):
        summarize(problems, k=5)


def test_sample_result_from_completion():
    got = SampleResult.from_completion(
        "a b c</think><answer>7</answer>", True, "7", count=lambda t: len(t.split())
    )
    assert got == SampleResult(correct=True, answer="7", well_formed=True, reasoning_length=3)
    unclosed = SampleResult.from_completion("<think>abcd", False, None, style="think_answer")
    assert (unclosed.well_formed, unclosed.reasoning_length) == (False, 4)
