"""`tinyseek r1`: DeepSeek-R1's whole recipe in miniature (cold start, RL with language consistency,
rejection sampling, second RL) beside the R1-Zero arm, and distillation vs RL for a small dense student.

- `recipe`: every setting of the pipeline, with why.
- `traces`: the cold start's and rejection sampling's SFT data.
- `measure`: per-problem scores, bootstrap intervals and training FLOPs.
- `pipeline`: the stages, resumable one by one; `report`: report.md, plots and summary.json.
"""

from tinyseek.r1.recipe import R1Recipe

__all__ = ["R1Recipe"]
