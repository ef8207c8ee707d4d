"""The r1 recipe: every number of the `tinyseek r1` pipeline, with the reason for each.

DeepSeek-R1's four-stage recipe and its distillation finding, in miniature, on the r1zero task (column
arithmetic, `tinyseek.r1zero.recipe`) rendered in English, French and Chinese:

- a base pretrained from scratch on an uneven language mix with some code-switching (a French or
  Chinese question worked in English), so that reasoning in the prompt's language is a behaviour the
  base has but does not always show, and RL can lose or keep it;
- the R1-Zero arm: pure GRPO on prompts in the three languages, accuracy reward only;
- the R1 arm: cold start (SFT of the base on a few hundred readable, language-consistent traces) →
  reasoning RL with accuracy + format + language-consistency rewards → rejection sampling of that
  checkpoint (correct, well formed, language-consistent) + SFT of the base on the kept traces → a
  second RL stage with the same rewards;
- the distillation arm: a dense student with a fifth of the teacher's activated parameters,
  pretrained on the same corpus with fewer tokens, then either SFT'd on the R1 arm's rejection-sampled
  traces (distilled) or trained by pure GRPO from its own base (RL-only) until its training FLOPs
  reach the distillation's.

Every stage is bounded by tokens, steps or trace counts (`seconds` caps are a safety net), as in r1zero.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tinyseek.r1zero.recipe import (
    MAX_NEW_TOKENS,
    CorpusRecipe,
    EvalRecipe,
    FamilyRecipe,
    GRPORecipe,
    PretrainRecipe,
)
from tinyseek.r1zero.recipe import SMOKE as R1ZERO_SMOKE
from tinyseek.tasks.base import LANGUAGES

LANGS = ("en", "fr", "zh")


def _families() -> tuple[FamilyRecipe, ...]:
    return (FamilyRecipe("addition"), FamilyRecipe("multiplication"))


@dataclass(frozen=True)
class MixRecipe:
    """The base corpus's languages.

    weights 12 / 5 / 3 (en 60%, fr 25%, zh 15%): uneven, as web corpora are; every language still
    gets enough worked traces (≈ 0.7M tokens of Chinese-prompt documents in 4.5M) for the shared skill, reading the
    operands, to carry over. code_switch_rate 0.3: three in ten French or Chinese documents work
    their question in English, as bilingual web text does, so that a model has another language to
    reason in under a French or Chinese prompt; which one GRPO keeps is what the R1-Zero arm measures
    (with an accuracy reward alone it kept English: 67% of its French reasoning and 0% of its Chinese
    was in the prompt's language, README).
    """

    langs: tuple[str, ...] = LANGS
    weights: tuple[int, ...] = (12, 5, 3)
    code_switch_rate: float = 0.3


@dataclass(frozen=True)
class TraceRecipe:
    """One rejection-sampling pass: k samples (T 0.6, top-p 0.95, R1's sampling) on `problems`
    train-split problems per family and language; a sample is kept when it is correct, well formed and
    at least `min_language` of its reasoning is in the prompt's language; at most `per_prompt` per
    problem, so that no problem dominates the SFT data.
    fill_from_solutions: a language with fewer than `problems` x families kept traces is topped up
    with the task's own worked solutions in that language (no slips; checked at the corpus rate). The
    cold start needs every language equally (a language the R1-Zero arm has abandoned is the one
    that needs teaching most); the paper's cold start was likewise partly written by hand.
    """

    problems: int = 64
    k: int = 4
    per_prompt: int = 1
    min_language: float = 0.95
    fill_from_solutions: bool = False
    max_new_tokens: int = MAX_NEW_TOKENS


@dataclass(frozen=True)
class SFTRecipe:
    """SFT of a base on traces: `epochs` passes over them, `batch_size` rows of `seq_len` tokens.
    lr 5e-4 (a sixth of pretraining's peak, cosine to 10%): the traces are in the base's own format,
    so SFT is meant to fix behaviours (format, language, the summary line) rather than teach new ones;
    not tuned (the README has what the cold start left of the base's accuracy).
    seq_len 448: a sampled trace may run to 288 tokens, after a prompt of ≈ 100 (preamble) and before
    the summary line; SFT never splits a document, so every kept trace must fit."""

    epochs: int = 2
    batch_size: int = 8
    seq_len: int = 448
    lr: float = 5e-4  # warmed up over 5 steps (a tenth of a shorter run)
    seconds: float = 900.0


@dataclass(frozen=True)
class RLRewards:
    """R1's reasoning-RL reward: accuracy + format + language consistency, summed. language 0.5: the
    paper adds the share directly; at 0.5 a correct answer still outweighs any language gain (so RL
    never trades accuracy for language), while a wrong-language trace in a group of right ones is
    pushed down. The format reward is `GRPORecipe.format_reward`."""

    accuracy: float = 1.0
    language: float = 0.5

    def weights(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "language": self.language}


def _teacher_pretrain() -> PretrainRecipe:
    return PretrainRecipe()


def _student_pretrain() -> PretrainRecipe:
    """Every layer dense, hidden 64, 2 layers, 4 heads, MLP 192, latents 32: ≈ 0.18M parameters, 0.19 of
    the teacher's ≈ 0.95M activated (the pipeline records the exact ratio). With 4 layers (0.31M, a
    third) the student's own RL reached or passed its teacher in every seed (89.6 / 97.5 / 90.4% pass@1
    against the R1 arm's 70.8 / 88.9 / 93.1%, with 1,150-1,420 distillation traces): two-digit column
    arithmetic was within its reach by RL alone. With 2 layers its RL levels off (seed 2: 71% after 80
    steps, 80% after 300). 3.5M tokens: fewer than the teacher's 4.5M, as a small model's base is a
    cheaper run; the same corpus and tokenizer. With 2.0M the student's base could not read the
    operands (its samples restated `93+61` for `17+61`), and neither distillation (7.2% pass@1) nor RL
    (13.7%) could build on it."""
    return PretrainRecipe(
        tokens=3_500_000,
        seconds=1500.0,
        model_overrides={
            "num_nextn_predict_layers": 0,
            "hidden_size": 64,
            "intermediate_size": 192,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "q_lora_rank": 32,
            "kv_lora_rank": 32,
        },
    )


def _student_corpus() -> CorpusRecipe:
    """The teacher's corpus with direct answers joining at the same share of the student's shorter
    budget (30,000 x 3.5 / 4.5 documents), so that both bases end on the same mix. With the teacher's
    30,000 the student's 3.5M tokens stopped about where direct answers begin: its base was worked
    traces only, a reasoner before RL (RL-only student 88% pass@1 against the teacher's R1-Zero arm's
    74%), and the comparison with distillation measured the corpora, not the recipes."""
    return CorpusRecipe(direct_from=23_300)


def _r1_grpo() -> GRPORecipe:
    """Prompts: 12 a step (2 families x 3 languages x 2), G = 8, 40 steps at lr 1e-4 (r1zero's)."""
    return GRPORecipe(prompts_per_step=12)


@dataclass(frozen=True)
class R1Recipe:
    """The whole pipeline's settings; `R1Recipe.preset("r1")` is the default run, `"smoke"` the test size.

    cold_start 64 problems x 2 families x 3 languages, one trace each: ≈ 380 traces, R1's "few hundred"
    at our scale... drawn from the R1-Zero arm (the paper's source: R1-Zero outputs kept for
    readability), topped up from the worked solutions where a language falls short.
    rejection 512 problems per family and language, k 4, 2 kept per problem: up to 6,144 traces
    (4,600-5,600 kept) for the second SFT and for distillation, the paper's "800k samples" at our
    scale. With 128 problems (≈ 1,150 kept) distillation was bound by its data: the 2-layer student
    distilled to 66% pass@1 against its RL-only twin's 71% (seed 2; 70% against 76% with 8 epochs);
    with 4,655 traces, 92% against 80%. The larger second SFT also lifted the R1 arm (seed 0: 70.8%
    -> 84.1%).
    rl2 30 steps: the SFT from the base starts the second RL stage below the first's end (0.22
    accuracy at T 1 against 0.8); with 20 steps it reached 0.6 and the R1 arm ended 14 points of
    pass@1 under the R1-Zero arm.
    student_rl_chunk 10: the RL-only student runs GRPO in chunks of 10 steps until its training FLOPs
    reach the distillation's (at most student_rl_max_steps, 400: matching the distillation of
    ≈ 5,000 traces takes 200-300 steps), so it gets at least the same compute.
    distill 4 epochs at lr 1e-3: the paper's distillation is plain SFT on many traces; on ≈ 1,150
    traces (4-layer student) the SFT recipe (2 epochs at 5e-4) left the student at 46% pass@1, under
    its teacher's 71%; 2 epochs at 2e-3 gave 68%, 3 at 2e-3 73%, 4 at 1e-3 78% (seed 0), above the
    teacher: the kept traces hold none of the slips the teacher's own samples still make.
    """

    families: tuple[FamilyRecipe, ...] = field(default_factory=_families)
    corpus: CorpusRecipe = field(default_factory=CorpusRecipe)
    mix: MixRecipe = field(default_factory=MixRecipe)
    teacher: PretrainRecipe = field(default_factory=_teacher_pretrain)
    student: PretrainRecipe = field(default_factory=_student_pretrain)
    student_corpus: CorpusRecipe = field(default_factory=_student_corpus)
    r1zero_grpo: GRPORecipe = field(default_factory=_r1_grpo)
    cold_start: TraceRecipe = field(default_factory=lambda: TraceRecipe(fill_from_solutions=True))
    cold_start_sft: SFTRecipe = field(default_factory=lambda: SFTRecipe(epochs=3))
    rl1: GRPORecipe = field(default_factory=lambda: dataclasses.replace(_r1_grpo(), format_reward=0.25))
    rewards: RLRewards = field(default_factory=RLRewards)
    rejection: TraceRecipe = field(default_factory=lambda: TraceRecipe(problems=512, per_prompt=2))
    sft: SFTRecipe = field(default_factory=SFTRecipe)
    rl2: GRPORecipe = field(
        default_factory=lambda: dataclasses.replace(_r1_grpo(), format_reward=0.25, max_steps=30)
    )
    distill: SFTRecipe = field(default_factory=lambda: SFTRecipe(epochs=4, lr=1e-3))
    student_rl: GRPORecipe = field(default_factory=_r1_grpo)
    student_rl_chunk: int = 10
    student_rl_max_steps: int = 400
    eval: EvalRecipe = field(default_factory=lambda: EvalRecipe(problems_per_family=64))

    def __post_init__(self) -> None:
        names = [f.name for f in self.families]
        if len(names) < 1 or len(set(names)) != len(names):
            raise ValueError(f"families {names}: expected distinct task families")
        for lang in self.mix.langs:
            if lang not in LANGUAGES:
                raise ValueError(f"mix.langs {self.mix.langs}: {lang!r} is not one of {', '.join(LANGUAGES)}")
        if len(self.mix.weights) != len(self.mix.langs) or min(self.mix.weights) < 1:
            raise ValueError(f"mix.weights {self.mix.weights}: expected one integer >= 1 per language")
        if not 0.0 <= self.mix.code_switch_rate <= 1.0:
            raise ValueError(
                f"mix.code_switch_rate = {self.mix.code_switch_rate}: expected a share in [0, 1]"
            )
        per_round = len(names) * len(self.mix.langs)
        for name in ("r1zero_grpo", "rl1", "rl2", "student_rl"):
            g: GRPORecipe = getattr(self, name)
            if g.prompts_per_step % per_round:
                raise ValueError(
                    f"{name}.prompts_per_step = {g.prompts_per_step}: expected a multiple of {per_round} "
                    "(families x languages), so every step samples each pair equally"
                )
        for name in ("cold_start", "rejection"):
            t: TraceRecipe = getattr(self, name)
            if t.problems < 1 or t.k < 1 or t.per_prompt < 1 or not 0.0 <= t.min_language <= 1.0:
                raise ValueError(
                    f"{name} = {t}: expected problems, k, per_prompt >= 1, min_language in [0, 1]"
                )
        if self.student_rl_chunk < 1 or self.student_rl_max_steps < self.student_rl_chunk:
            raise ValueError(
                f"student_rl_chunk = {self.student_rl_chunk}, student_rl_max_steps = "
                f"{self.student_rl_max_steps}: expected 1 <= chunk <= max_steps"
            )

    @classmethod
    def preset(cls, name: str) -> R1Recipe:
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown r1 recipe {name!r}; expected one of {', '.join(PRESETS)}") from None


_SMOKE_PRETRAIN = dataclasses.replace(R1ZERO_SMOKE.pretrain, tokens=30_000)
_SMOKE_GRPO = dataclasses.replace(
    R1ZERO_SMOKE.grpo, group_size=2, prompts_per_step=6, max_new_tokens=40, eval_problems=6
)
_SMOKE_TRACES = TraceRecipe(problems=2, k=2, max_new_tokens=40, min_language=0.0, fill_from_solutions=True)
_SMOKE_SFT = SFTRecipe(epochs=1, batch_size=4, seconds=15.0)

# Every stage at a size that runs in well under two minutes on 2 cores; its figures mean nothing.
SMOKE = R1Recipe(
    teacher=_SMOKE_PRETRAIN,
    student=dataclasses.replace(
        _SMOKE_PRETRAIN, tokens=15_000, model_overrides={**_SMOKE_PRETRAIN.model_overrides, "hidden_size": 32}
    ),
    r1zero_grpo=_SMOKE_GRPO,
    cold_start=_SMOKE_TRACES,
    cold_start_sft=_SMOKE_SFT,
    rl1=dataclasses.replace(_SMOKE_GRPO, format_reward=0.25),
    rejection=_SMOKE_TRACES,
    sft=_SMOKE_SFT,
    rl2=dataclasses.replace(_SMOKE_GRPO, max_steps=1),
    distill=_SMOKE_SFT,
    student_rl=_SMOKE_GRPO,
    student_rl_chunk=1,
    student_rl_max_steps=3,
    eval=dataclasses.replace(R1ZERO_SMOKE.eval, problems_per_family=2, max_new_tokens=40),
)

PRESETS: dict[str, R1Recipe] = {"r1": R1Recipe(), "smoke": SMOKE}
