"""`tinyseek r1zero`: DeepSeek-R1-Zero in miniature, from tokenizer to report, on a laptop CPU.

- `recipe`: every setting of the pipeline, with why (the research behind the demo).
- `self_check`: does a completion verify its own answer (the behaviour RL should grow)?
- `metric_names`: the GRPO metrics the report reads, shared with the loop that logs them.
- `report`: report.md and PNG plots from what the pipeline measured.
"""

from tinyseek.r1zero.recipe import Recipe
from tinyseek.r1zero.self_check import is_redoing, is_self_checking, self_check_share

__all__ = ["Recipe", "is_redoing", "is_self_checking", "self_check_share"]
