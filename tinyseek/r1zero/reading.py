"""Does the base read the question? Operand digits copied right, under teacher forcing.

A column trace starts each column by copying the operands' digits of that place out of the question
(`ones: 6+6=12`, `tens: 9+7+1=17`). That copy is the skill a tiny base learns last and abruptly, and
without it nothing downstream works: RL can only select what the base samples, and a base that
misreads the operands samples no right traces to select (an r1zero seed whose base read 7% of the
first operand's leading digits gained +4 to +12 points from RL, against +60 to +99 for the others).
Sampled accuracy mixes this with every other failure; the probe isolates it. It feeds the model
clean, slip-free traces of held-out validation problems and counts how often its most likely next
token at an operand digit of a column line is that digit — a few seconds of forward passes, so the
report can say plainly when a base did not learn to read instead of showing a failed RL stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from tinyseek.model.transformer import Transformer
from tinyseek.tokenizer import Tokenizer
from tinyseek.train.documents import TaskSpec, task_documents

# The first two digits of a column line, joined by the column's operator: `ones: 6+6=`, `tens: 6*8=`.
# The line may not hold a digit before them, so restated questions (`What is 28+43?`) never match.
_COLUMN_OPERANDS = re.compile(r"(?m)^[^\d\n]*(\d)[+*](\d)(?=[+=])")
READS_THE_OPERANDS = 0.9  # below this share the report says the base did not learn to read


def operand_reading(
    model_dir: str | Path, families: Sequence[str], seed: int, difficulty: int, problems: int = 100
) -> dict[str, float]:
    """Per family, the share of column-line operand digits the model predicts right (teacher-forced)."""
    if problems < 1:
        raise ValueError(f"problems = {problems}: expected at least one validation problem per family")
    model = Transformer.from_pretrained(model_dir).eval()
    tokenizer = Tokenizer.from_pretrained(model_dir)
    shares = {}
    for family in families:
        spec = TaskSpec(names=(family,), preamble_share=0.0, difficulty=difficulty)
        documents = task_documents(spec, seed, "validation")
        right = total = 0
        for _ in range(problems):
            document = next(documents)
            encoding = tokenizer.backend.encode(
                document.prompt + document.completion, add_special_tokens=False
            )
            ids = torch.tensor([encoding.ids])
            with torch.no_grad():
                predicted = model(ids).argmax(-1)[0]
            for match in _COLUMN_OPERANDS.finditer(document.completion):
                for group in (1, 2):
                    char = len(document.prompt) + match.start(group)
                    token = next(i for i, (s, e) in enumerate(encoding.offsets) if s <= char < e)
                    right += int(predicted[token - 1] == ids[0, token])
                    total += 1
        if total == 0:
            raise ValueError(f"task {family!r}: its traces have no column lines (`ones: a+b=`) to probe")
        shares[family] = right / total
    return shares
