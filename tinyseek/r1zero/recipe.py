"""The r1zero recipe: every number of the `tinyseek r1zero` pipeline, with the reason for each.

The pipeline trains a tokenizer and a tiny MLA + MoE base model from scratch, measures held-out pass@1
and greedy accuracy, runs pure GRPO from that base (no SFT, accuracy reward only) and measures again.
R1-Zero's three signatures are what the recipe is built to show: accuracy, the length of the thinking
and self-verification rising together under RL. The base's corpus holds three behaviours, per problem:

- a direct answer (`<think>\n\n</think>` then the answer; `FamilyRecipe.direct_rate` of the
  documents): short, and nearly always wrong in a 1.8M-parameter model's hands, since it must add
  2-digit numbers in one step. It is the majority, so greedy decoding takes it: a base that does not
  think by default;
- a worked column trace (tinyseek.tasks.column_arithmetic), with random slips (a total off by one) at
  `error_rate` of its columns: longer, usually right;
- the same work checked (`self_check_rate` of the traces): done again, carefully, compared,
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

    difficulty 0: 2-digit + 2-digit addition / 2-digit × one digit, in the column format of
    tinyseek.tasks.column_arithmetic. The tiny model reads an operand's digits into their columns
    last, and (before the tokenizer kept a space with the digit after it) the leading digit of the
    first operand last of all: with 3-digit operands it still wrote the hundreds digit as a constant
    after 2.2M tokens, and three place-hint formats did not help at 1.2M (the module docstring there
    has the figures; 3-digit operands were not tried again with today's tokenizer). 2-digit problems leave a direct answer
    out of reach (base direct answers: 1-2% right) while the column work is learnable in budget.
    direct_rate 0.65: a clear majority, so that greedy decoding answers directly. At 0.55 the
    margin was too thin: one base of five took the reasoning path greedily (greedy 99.5% before RL,
    nothing left for RL to show), the others answered directly (greedy 0-2%). T 0.6-1 samples still
    reason in ≈ 25-35% of completions, so the groups of G = 8 hold both.
    self_check_rate 0.55 of the worked traces: checking is the larger part of the reasoning the base
    samples, so whether RL keeps, grows or drops it is measured.
    error_rate 0.25: each column's total is misremembered by one at random in a quarter of the
    columns of the plain work (and of a check's first attempt, which the check then catches): a
    plain 2-column trace is wrong on ≈ 44% of problems, a checked one never. The slip used to be a
    rule on the operands (a carry dropped when the top digit was the larger); the base's check then
    copied the work's lines, and after RL its checked completions repeated the work's own mistakes
    (seed 1: checked 85% right, unchecked 88%). A random slip can only be caught by a check that
    computes its lines.
    """

    name: str
    difficulty: int = 0
    error_rate: float = 0.25
    self_check_rate: float = 0.55
    direct_rate: float = 0.65

    def __post_init__(self) -> None:
        for attr in ("error_rate", "self_check_rate", "direct_rate"):
            value = getattr(self, attr)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FamilyRecipe({self.name!r}).{attr} = {value}: expected a rate in [0, 1]")


@dataclass(frozen=True)
class CorpusRecipe:
    """The documents are an endless stream of train-split problems (the trainer's `task_documents`),
    so the base never memorises answers and every held-out problem is new (train, validation and
    test are disjoint shares of a hash of the canonical problem).
    direct_from 30,000: the first 30,000 documents (≈ 3.48M tokens, counted with a run's tokenizer;
    3.96M with the bare-space one) are worked traces only; direct answers join for the last ≈ 1.0M
    tokens, enough for greedy decoding to take them (base greedy 0.5-4.5%). Reading the operands (copying each digit of the
    question into its column line) appears abruptly, and the budget must train well past it. While
    the tokenizer put a bare space token before every number, whether it appeared within the budget
    varied with the seed: one base of seeds 0-2 read at 3.2M tokens, two of three at 4.5M, and the
    one that did not gained +4 to +12 points from RL. With the space kept on the number's first digit
    (tinyseek.tokenizer), the teacher-forced probe (tinyseek.r1zero.reading, on the pretraining
    checkpoints) found every operand digit read by 2.25M tokens in seeds 0, 1 and 2, so 4.5M trains
    twice past the jump; all three then met all eight criteria after RL (README, the main job).
    template_share 0.1 (the trainer's `r1zero_preamble_share`): one document in ten carries the
    ~90-token R1-Zero preamble; the rest start at `User:`. The preamble is constant, so a minority is
    enough for the model to read it at RL and eval time.
    vocab_size 512: an upper bound; byte-level BPE over a corpus-only alphabet with every digit its own
    pre-token stops at ≈ 250 tokens (numbers are read digit by digit, words are single tokens).
    """

    template_share: float = 0.1
    direct_from: int = 30_000
    vocab_size: int = 512
    language: str = "en"
    seed: int = 0


@dataclass(frozen=True)
class PretrainRecipe:
    """The `tiny` preset (hidden 128, 4 layers, MLA, 8 routed experts top-2 + 1 shared) without its
    MTP module (MTP costs a full extra block per token and RL-Zero does not use it), with a KV
    latent of 64 instead of 32 (every head's keys and values come from it; ≈1.8M parameters with the
    ≈ 250-token vocabulary the corpus gives).
    Sequences of 384 tokens, batch 5 x 384 = 1920 tokens a step: RL and eval prompts carry the
    ~90-token preamble and the longest trace (a checked multiplication with a redo) is ≈ 210 tokens,
    so positions up to ~310 must be trained; at 256 the redo ran past the trained positions.
    lr 3e-3 (50 warm-up steps, cosine decay to 10%), fp32: on the AVX-512-BF16 machine bf16 autocast
    ran at 2,000 tokens/s against 7,000 in fp32 (the tiny matmuls gain nothing), and on AVX2 it is
    emulated; one thread: a second one did not speed this model up (≈ 7,000 tokens/s either way).
    tokens 4.5M: the lr schedule runs over exactly this many tokens, so it completes on any machine;
    `seconds` is only a safety net (a loaded machine reached the earlier 900 s cap and cut
    pretraining short; three 4.5M-token runs side by side beside other jobs took ≈ 1,270 s each).
    """

    preset: str = "tiny"
    model_overrides: dict[str, Any] = field(
        default_factory=lambda: {"num_nextn_predict_layers": 0, "kv_lora_rank": 64}
    )
    tokens: int = 4_500_000
    seconds: float = 3000.0
    seq_len: int = 384
    batch_size: int = 5
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    autocast_bf16: bool = False
    checkpoints: int = 6  # kept, evenly spaced: bench/r1zero_emergence.py measures the curve on them


# The completion limit of every sampling stage (RL rollouts, evaluation, r1's trace sampling): the
# longest trace of the corpus (a checked multiplication with a redo) is ≈ 210 tokens, so a completion
# can think longer than anything the base saw; at 192 a redo was cut short and scored 0 (a quarter
# of the wrong checked completions in one run).
MAX_NEW_TOKENS = 288


@dataclass(frozen=True)
class GRPORecipe:
    """Pure GRPO from the base: G = 8 samples of 8 prompts a step at temperature 1 (the base's own
    distribution, where correct traces are a sizeable minority); reward = accuracy only (the corpus
    already fixes the format, and rollouts stop at `</answer>`); β = 0 (no reference model), μ = 1
    (on-policy), samples with zero advantage left out of the backward pass (same gradient, less
    compute); 40 steps, lr 1e-4.
    loss_type dr_grpo: Dr. GRPO's aggregation (a constant normaliser, no std division). With GRPO's
    per-sequence mean the same advantage pushes each token of a short completion harder than each
    token of a long one, so at equal accuracy the shorter behaviour wins: measured with the same kind
    of base (seed 1, 2.1M tokens, lr 1.5e-4), accuracy rose (pass@1 28% → 93%) but the checking share
    fell from 21% to 6% and the length stopped rising after step 10.
    eval_every 10 / eval_problems 96: the validation curves (T 0.6), five points a run.
    """

    seconds: float = 900.0  # a safety net: max_steps ends the default run long before it
    max_steps: int = 40
    group_size: int = 8
    prompts_per_step: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = MAX_NEW_TOKENS
    lr: float = 1e-4
    loss_type: LossType = "dr_grpo"
    beta: float = 0.0
    mu: int = 1
    format_reward: float = 0.0
    seed: int = 100
    eval_every: int = 10  # steps between held-out validation evaluations (the curves)
    eval_problems: int = 96  # validation problems per evaluation, round-robin over the families


@dataclass(frozen=True)
class EvalRecipe:
    """R1's measurement: pass@1 as the mean over k = 4 samples at temperature 0.6, top-p 0.95, plus one
    greedy completion, on up to 200 held-out test-split problems per family, drawn per seed, the
    same problems for the base and the RL model. The test split of 2-digit × one-digit
    multiplication holds 72 problems (of 720; 2-digit addition: 412 of 4,095), so every seed
    evaluates all 72: its intervals come from those 72 problems and the k samples. Two examples a
    family are kept for the report."""

    problems_per_family: int = 200
    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = MAX_NEW_TOKENS
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
        model_overrides={
            "num_nextn_predict_layers": 0,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "moe_intermediate_size": 64,
            "n_routed_experts": 4,
        },
        tokens=40_000,
        seconds=10.0,
        seq_len=96,
        batch_size=4,
        warmup_steps=5,
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
