"""Evaluation as the R1 report measures it: pass@1 over k samples, unbiased pass@k, cons@k.

`metrics` holds the estimators (no model needed), `problems` picks what to pose, `runner` samples and
scores in one batched engine call, `rejection` keeps the verified traces as SFT data.
"""

from tinyseek.eval.metrics import SampleResult, cons_at_k, majority_vote, mean_pass_at_k, pass_at_k, summarize
from tinyseek.eval.problems import ProblemSet, data_source, problem_sets, task_problems
from tinyseek.eval.rejection import RejectionSummary, select_traces, write_traces
from tinyseek.eval.runner import EvalReport, ProblemRecord, Sample, evaluate, family_metrics

__all__ = [
    "EvalReport",
    "ProblemRecord",
    "ProblemSet",
    "RejectionSummary",
    "Sample",
    "SampleResult",
    "cons_at_k",
    "data_source",
    "evaluate",
    "family_metrics",
    "majority_vote",
    "mean_pass_at_k",
    "pass_at_k",
    "problem_sets",
    "select_traces",
    "summarize",
    "task_problems",
    "write_traces",
]
