"""The r1zero recipe: every number of the `tinyseek r1zero` pipeline, with the reason for each.

The pipeline trains a tokenizer and a tiny MLA + MoE base model from scratch, measures held-out pass@1
and greedy accuracy, runs pure GRPO from that base (no SFT, accuracy reward only) and measures again.
R1-Zero's three signatures are what the recipe is built to show: accuracy, the length of the thinking
and self-verification rising together under RL. The base's corpus holds three behaviours, per problem:

- a direct answer (`<think>\n\n</think>` then the answer; `FamilyRecipe.direct_rate` of the
  documents): short, and nearly always wrong in a 1.7M-parameter model's hands, since it must add
  3-digit numbers in one step. It is the majority, so greedy decoding takes it: a base that does not
  think by default;
- a worked column trace (tinyseek.tasks.column_arithmetic), with operand-dependent slips at
  `error_rate` of its error-prone steps: longer, usually right;
- the same work checked (`self_check_rate` of the traces): done again the other way round, compared,
  and redone when the two differ. In the corpus a checked trace always ends right, and in the model's
  hands it catches slips and the model's own misreadings: the longest behaviour, and the most accurate.

Nothing in the reward names length or checking; GRPO can only select what ends right more often.
Thinking rises because direct answers fail; checking rises if it pays over the plain trace (the
report shows checked vs unchecked accuracy, so whether it paid is measured, not assumed).

The wave-1 recipe (every trace worked, slips at 85% of prone steps, line-by-line checks in 20% of
traces) raised accuracy but not length or checking: GRPO unlearned the slips step by step, which was
cheaper than checking, and a direct answer was not a behaviour the base had.

Every stage is bounded by tokens or steps (`seconds` caps are a safety net the default run does not
reach on a 2-core CPU), so a faster or slower machine runs the same computation; floating-point
differences between CPUs still move a trajectory as a seed does, hence `--seeds`. `smoke` runs the
same stages at a size that finishes in seconds, for the tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinyseek.rl.config import LossType


@dataclass(frozen=True)
class FamilyRecipe:
    """One task family of the corpus and of the evaluation.

    difficulty 1: 3-digit + 3-digit addition / 3-digit × one digit; both are column algorithms with
    carries in one line format (`tens: 7*6=42, 42+3=45, write 5, carry 4 → 56.`, tinyseek.tasks.
    column_arithmetic), which a 1.7M-parameter model learns within the pretraining budget; 46%
    (addition) and 39% (multiplication) of problems have no error-prone step, which bounds the base's
    greedy accuracy from above. Three format choices were measured to decide whether the base can
    follow the corpus at all after ~2M tokens (same recipe otherwise): the running digits
    (`→ 56`; without them, the answer read back from the lines was wrong: greedy 4.8% addition),
    the place word (`tens:`; without it the columns misread the operands: 1% greedy), and the carry
    added to a product as its own step (without it 72% of multiplication lines with a carry were
    wrong; greedy 11.6% against 28.2% with it, at fewer tokens).
    error_rate 0.85: far enough above 0.5 that greedy and temperature-0.6 decoding follow the slip
    (at T = 0.6 a 0.85 majority sharpens to ≈ 0.95), while 15% of prone steps stay right, which a
    per-step preference can grow.
    self_check_rate 0.2: a minority behaviour (greedy never takes it) that the base still samples at
    T = 1 in ≈ 1 completion of 5-8, i.e. in most groups of G = 8. The check runs line by line
    (`Check: 45 → write 5, carry 4 ✗`, then the line again, right): two whole-trace checks were
    tried first and were beyond the tiny model (a one-line reverse operation, and the work redone at
    the end; checked traces ended right 0% of the time). Measured in the demo run (README): the
    base's checked samples (T 0.6) end right 51% / 51% of the time against 47% / 27% unchecked, a
    smaller edge than the corpus has (checked traces are always right there), and one that shrinks
    as GRPO removes slips, which is why checking is not selected.
    """

    name: str
    difficulty: int = 0
    error_rate: float = 0.5
    self_check_rate: float = 0.55
    direct_rate: float = 0.55

    def __post_init__(self) -> None:
        for attr in ("error_rate", "self_check_rate", "direct_rate"):
            value = getattr(self, attr)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FamilyRecipe({self.name!r}).{attr} = {value}: expected a rate in [0, 1]")


@dataclass(frozen=True)
class CorpusRecipe:
    """The documents are an endless stream of train-split problems (the trainer's `task_documents`),
    so the base never memorises answers and every held-out problem is new (the test split is a hash
    of the canonical problem, disjoint from train).
    template_share 0.2 (the trainer's `r1zero_preamble_share`): only one document in five carries the ~90-token R1-Zero preamble; the rest
    start at `User:`. The preamble is constant, so a minority is enough for the model to read it at
    RL and eval time, and the pretraining tokens go to the worked solutions (with the preamble on
    every document, 57% of the tokens would be template).
    vocab_size 512: an upper bound; byte-level BPE over a corpus-only alphabet with every digit its own
    pre-token stops at ≈ 230 tokens (numbers are read digit by digit, words are single tokens).
    """

    template_share: float = 0.1
    direct_from: int = 12_600
    vocab_size: int = 512
    language: str = "en"
    seed: int = 0


@dataclass(frozen=True)
class PretrainRecipe:
    """The `tiny` preset (hidden 128, 4 layers, MLA, 8 routed experts top-2 + 1 shared, ≈1.7M
    parameters) without its MTP module: MTP costs a full extra block per token and RL-Zero does not
    use it. Sequences of 256 tokens, batch 8 x 256 = 2048 tokens a step: RL and eval prompts carry
    the ~98-token preamble and a checked completion runs to ~150 tokens, so positions up to ~250
    must be trained (RoPE does not extrapolate past the rows).
    lr 3e-3 (50 warm-up steps, cosine decay to 10%), fp32 (on a CPU without AVX-512 BF16, bf16
    autocast ran ≈ 6x slower for this model).
    tokens 1.7M: the lr schedule runs over exactly this many tokens, so the cosine completes on any
    machine; `seconds` only caps a slow machine (it then stops early). It is what the 10-minute
    budget leaves after evaluation and GRPO (≈ 285 s at the ≈ 6,000 tokens/s two cores gave).
    Measured with the traces of tinyseek.tasks.column_arithmetic (base greedy, addition /
    multiplication): 47.6% / 29.6% in the demo run (README); 38.8% / 28.6% in an exploratory run
    with 1.8M tokens, so the spread between schedules is several points. With the earlier trace
    format even 2.2-2.95M tokens left the base below 5% greedy.
    """

    preset: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=lambda: {"num_nextn_predict_layers": 0})
    tokens: int = 2_100_000
    seconds: float = 900.0
    seq_len: int = 256
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    autocast_bf16: bool = False
    checkpoints: int = 6  # kept, evenly spaced: the emergence curve is measured on them


@dataclass(frozen=True)
class GRPORecipe:
    """Pure GRPO from the base: G = 8 samples of 8 prompts a step at temperature 1 (the base's own
    distribution, where correct traces are a sizeable minority); reward = accuracy only (the corpus
    already fixes the format, and rollouts stop at `</answer>`); β = 0 (no reference model), μ = 1
    (on-policy, ratio 1), samples with zero advantage left out of the backward pass (the GRPO trainer
    does so whenever β = 0: same gradient, less compute); lr 1.5e-4 (DESIGN §4: 5e-5-1e-4 smooth,
    2e-4 oscillates); max_new_tokens 160 covers a checked trace (≤ 156 tokens).
    8 prompts a step rather than 16: a step is ~3.8 s instead of ~6 s (a rollout lasts as long as
    its longest completion either way), so the wall-clock budget buys 45 steps instead of ~30, and
    Adam moves the weights about as far per step. Measured (exploratory runs, 1.7-1.8M-token
    bases): 16 prompts x 29-30 steps raised greedy by +25 / +21 points (addition / multiplication);
    8 prompts x 45 steps by +30 / +51.
    loss_type: the GRPO variant, with its published defaults (`GRPOConfig.preset`). grpo: Dr.
    GRPO's aggregation (no length or std normalisation, which removes GRPO's
    bias towards short correct answers) was tried for the self-check share; measured with the same
    base and budget (39 steps): greedy +26.6 / +39.8 against GRPO's +34.6 / +40.4, and the
    self-check share fell as well (5.6% -> 3.0%).
    format_reward: weight of R1's format reward (0 here: rollouts stop at `</answer>`, and the base
    is well formed on > 98% of completions).
    """

    seconds: float = 900.0
    max_steps: int = 40
    group_size: int = 8
    prompts_per_step: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 192
    lr: float = 1.5e-4
    loss_type: LossType = "grpo"
    beta: float = 0.0
    mu: int = 1
    format_reward: float = 0.0
    seed: int = 100
    eval_every: int = 10  # steps between held-out validation evaluations (the curves)
    eval_problems: int = 96  # validation problems per evaluation, round-robin over the families


@dataclass(frozen=True)
class EvalRecipe:
    """R1's measurement: pass@1 as the mean over k = 4 samples at temperature 0.6, top-p 0.95, plus one
    greedy completion, on 500 held-out (test-split) problems per family, the same problems for the
    base and the RL model. Two examples a family are kept for the report."""

    problems_per_family: int = 200
    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 192
    samples_per_family: int = 2
    seed: int = 1


def _default_families() -> tuple[FamilyRecipe, ...]:
    return (FamilyRecipe("addition"), FamilyRecipe("multiplication"))


@dataclass(frozen=True)
class Recipe:
    """The whole pipeline's settings; `Recipe.preset("r1zero")` is the demo, `"smoke"` the test size."""

    families: tuple[FamilyRecipe, ...] = field(default_factory=_default_families)
    corpus: CorpusRecipe = field(default_factory=CorpusRecipe)
    pretrain: PretrainRecipe = field(default_factory=PretrainRecipe)
    grpo: GRPORecipe = field(default_factory=GRPORecipe)
    eval: EvalRecipe = field(default_factory=EvalRecipe)

    def __post_init__(self) -> None:
        names = [f.name for f in self.families]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"families {names}: expected at least two distinct task families")
        if self.grpo.prompts_per_step % len(names):
            raise ValueError(
                f"grpo.prompts_per_step = {self.grpo.prompts_per_step}: expected a multiple of the "
                f"{len(names)} families, so every step samples each family equally"
            )
        from tinyseek.rl.config import LOSS_TYPES  # checked here, not after pretraining

        if self.grpo.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"grpo.loss_type = {self.grpo.loss_type!r}: expected one of {', '.join(LOSS_TYPES)}"
            )

    @classmethod
    def preset(cls, name: str) -> Recipe:
        if name not in PRESETS:
            raise ValueError(f"unknown r1zero recipe {name!r}; expected one of {', '.join(PRESETS)}")
        return PRESETS[name]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The smoke run exercises every stage (tokenizer, pretraining, eval, GRPO, eval, report) in well under
# two minutes on 2 cores; its accuracies mean nothing.
SMOKE = Recipe(
    pretrain=PretrainRecipe(
        tokens=40_000,
        seconds=10.0,
        seq_len=96,
        batch_size=4,
        warmup_steps=5,
        model_overrides={
            "num_nextn_predict_layers": 0,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "moe_intermediate_size": 64,
            "n_routed_experts": 4,
        },
    ),
    grpo=GRPORecipe(
        seconds=15.0,
        max_steps=2,
        group_size=4,
        prompts_per_step=4,
        max_new_tokens=48,
        eval_every=1,
        eval_problems=4,
    ),
    eval=EvalRecipe(problems_per_family=4, k=2, max_new_tokens=48, samples_per_family=1),
)

PRESETS: dict[str, Recipe] = {"r1zero": Recipe(), "smoke": SMOKE}
