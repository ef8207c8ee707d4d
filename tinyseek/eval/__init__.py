"""Evaluation as the R1 report measures it: pass@1 over k samples, unbiased pass@k, cons@k."""

from tinyseek.eval.metrics import SampleResult, cons_at_k, majority_vote, mean_pass_at_k, pass_at_k, summarize

__all__ = ["SampleResult", "cons_at_k", "majority_vote", "mean_pass_at_k", "pass_at_k", "summarize"]
