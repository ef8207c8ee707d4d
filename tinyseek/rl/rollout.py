"""Rollouts: G sampled completions per prompt from the inference engine, scored by a RewardSet.

Design choices:
- The sampler reads the group size, length limit, temperature and top-p from the run's GRPOConfig
  itself, so a knob added there cannot be forgotten on the way.
- Sampling goes through `tinyseek.LLM` over the very Transformer being trained: no weight copy, and
  the engine empties its prefix cache by itself when the optimizer changes the weights.
- One request per prompt with `n = G`: the G completions share the prompt's cache blocks. Each request
  is seeded from (run seed, global prompt index), so a run (and a resumed run) samples the same
  completions whatever else shares the batch; the engine gives completion i the seed + i.
- All groups of a round are scored in one RewardSet call, with the columns rewards may read:
  `problem` (a Problem), `task` (its Task), `task_problem` ((Task, Problem), what the built-in
  accuracy reward scores with), `answer`, `lang`, `completion_ids`, `completion_lengths`, `truncated`.
- Rewards see the question (not the templated prompt), so language detection reads the user's text.
- Under torchrun (`sample` with a process group) each rank completes and scores only its contiguous
  block of the round's prompts (tinyseek.parallel.ranks.shard_range: whole groups on one rank), with
  the seeds of their global indices, so a sample does not depend on the number of ranks; then every
  rank receives every group (ids, texts, rewards; the prompts it already holds), in global order.
- Generation stops at the template's stop strings (R1-Zero: `</answer>`, as evaluation does), put
  back into the text for the format reward; without the stop a policy learns to append text after
  the answer that no reward sees (measured in a 290-step prototype run).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.distributed as dist

from tinyseek.inference.llm import LLM
from tinyseek.inference.request import text_with_stop
from tinyseek.inference.sampling_params import SamplingParams
from tinyseek.parallel.ranks import gather_objects, rank_and_world, shard_range
from tinyseek.rl.config import GRPOConfig
from tinyseek.rl.rewards import RewardSet
from tinyseek.tasks.completion import PromptItem


def request_seed(run_seed: int, prompt_index: int) -> int:
    """A 62-bit seed per prompt: distinct streams for every (run, prompt), stable across machines."""
    return random.Random(f"grpo:{run_seed}:{prompt_index}").getrandbits(62)


def task_score(task_problem: tuple[Any, Any], completion: str) -> float:
    """The accuracy score of the built-in reward: the problem's own task verifier."""
    task, problem = task_problem
    return float(task.score(problem, completion))


@dataclass
class RolloutGroup:
    """One prompt's G completions with their rewards (`rewards` = weighted totals)."""

    item: PromptItem
    completion_ids: list[list[int]]
    texts: list[str]
    finish_reasons: list[str]
    rewards: list[float] = field(default_factory=list)
    reward_values: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def truncated(self) -> list[bool]:
        return [reason == "length" for reason in self.finish_reasons]


@dataclass
class RolloutRound:
    groups: list[RolloutGroup]
    seconds: float
    completion_tokens: int


class RolloutSampler:
    """Samples and scores groups of completions for a list of prompts."""

    def __init__(
        self, llm: LLM, rewards: RewardSet, config: GRPOConfig, seed: int = 0, stop: Sequence[str] = ()
    ) -> None:
        self.llm = llm
        self.rewards = rewards
        self.config = config
        self.seed = seed
        self.stop = list(stop)
        self.eos_ids = set(llm.engine.eos_token_ids)

    def sample(
        self, items: list[PromptItem], first_index: int, group: dist.ProcessGroup | None = None
    ) -> RolloutRound:
        """Complete `items` (global prompt indices from `first_index`) G times each, then score.

        With a process group this rank samples its block of `items` and all ranks return all groups;
        without one (None) the process samples them all."""
        start = time.perf_counter()
        rank, world = rank_and_world(group) if group is not None else (0, 1)
        mine = shard_range(len(items), rank, world)
        groups = self._sample_local([items[i] for i in mine], first_index + mine.start)
        local = RolloutRound(groups, time.perf_counter() - start, _tokens(groups))
        if world == 1:
            return local
        shared = [(g.completion_ids, g.texts, g.finish_reasons, g.rewards, g.reward_values) for g in groups]
        parts = gather_objects((shared, local.seconds), group)
        everything = [
            RolloutGroup(item, *fields)
            for item, fields in zip(items, (row for rows, _ in parts for row in rows), strict=True)
        ]
        # Wall time of the round: the slowest rank's, as every rank waits for it.
        return RolloutRound(everything, max(seconds for _, seconds in parts), _tokens(everything))

    def _sample_local(self, items: list[PromptItem], first_index: int) -> list[RolloutGroup]:
        if not items:
            return []
        params = [
            SamplingParams(
                max_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                n=self.config.group_size,
                seed=request_seed(self.seed, first_index + i),
                stop=self.stop,
            )
            for i in range(len(items))
        ]
        outputs = self.llm.generate([item.token_ids for item in items], params)
        groups = [
            RolloutGroup(
                item,
                [list(c.token_ids) for c in out.outputs],
                [text_with_stop(c, self.stop, self.eos_ids, self.llm.tokenizer) for c in out.outputs],
                [c.finish_reason or "length" for c in out.outputs],
            )
            for item, out in zip(items, outputs, strict=True)
        ]
        score_groups(groups, self.rewards)
        return groups


def _tokens(groups: list[RolloutGroup]) -> int:
    return sum(len(ids) for g in groups for ids in g.completion_ids)


def score_groups(groups: list[RolloutGroup], rewards: RewardSet) -> None:
    """Fill each group's `rewards` and `reward_values` from one RewardSet call over all completions."""
    rows = [(g, i) for g in groups for i in range(len(g.texts))]
    if not rows:
        return
    columns: dict[str, list[Any]] = {
        "problem": [g.item.problem for g, _ in rows],
        "task": [g.item.task for g, _ in rows],
        "task_problem": [(g.item.task, g.item.problem) for g, _ in rows],
        "answer": [g.item.problem.answer for g, _ in rows],
        "lang": [g.item.lang for g, _ in rows],
        "completion_ids": [g.completion_ids[i] for g, i in rows],
        "completion_lengths": [len(g.completion_ids[i]) for g, i in rows],
        "truncated": [g.truncated[i] for g, i in rows],
    }
    scores = rewards([g.item.question for g, _ in rows], [g.texts[i] for g, i in rows], **columns)
    offset = 0
    for g in groups:
        n = len(g.texts)
        g.rewards = scores.total[offset : offset + n]
        g.reward_values = {name: values[offset : offset + n] for name, values in scores.values.items()}
        offset += n
