"""The r1zero recipe presets build a real model config and task families, and reject bad settings."""

import dataclasses
import itertools

import pytest

from tinyseek.config import ModelConfig
from tinyseek.r1zero.recipe import FamilyRecipe, GRPORecipe, Recipe
from tinyseek.tasks import ReasoningTask, get_task


@pytest.mark.parametrize("name", ["r1zero", "smoke"])
def test_presets_name_real_families_and_model_configs(name):
    recipe = Recipe.preset(name)
    for family in recipe.families:
        assert isinstance(get_task(family.name), ReasoningTask)
    config = ModelConfig.preset(recipe.pretrain.preset, vocab_size=256, **recipe.pretrain.model_overrides)
    assert config.num_nextn_predict_layers == 0
    assert recipe.to_dict()["grpo"]["beta"] == 0.0


def test_demo_recipe_is_the_r1zero_setting():
    recipe = Recipe.preset("r1zero")
    # Direct answers are the base's majority (greedy takes them), worked traces the rest, checked ones
    # a good share of those; 2-digit operands (difficulty 0), which the tiny model learns to read in budget.
    assert all(f.direct_rate > 0.5 and 0 < f.self_check_rate < 1 for f in recipe.families)
    assert all(f.difficulty == 0 for f in recipe.families)
    assert (recipe.eval.k, recipe.eval.temperature, recipe.eval.top_p) == (4, 0.6, 0.95)
    # Every stage is bounded by tokens or steps; the wall-clock caps are a safety net above them.
    assert recipe.pretrain.seconds >= 600 and recipe.grpo.seconds >= 600
    # The completion limit leaves room beyond the longest trace of the corpus (a checked one with a redo).
    longest = 0
    for family in recipe.families:
        task = get_task(family.name)
        assert isinstance(task, ReasoningTask)
        for problem in itertools.islice(task.sample(0, family.difficulty), 300):
            longest = max(longest, len(task.trace(problem, "en", 1.0, 1.0).text()))
    assert recipe.grpo.max_new_tokens == recipe.eval.max_new_tokens
    assert longest < recipe.grpo.max_new_tokens * 2.2  # ≈ 2.2+ characters per token for these traces


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown r1zero recipe 'demo'"):
        Recipe.preset("demo")
    with pytest.raises(ValueError, match=r"error_rate = 1.5"):
        FamilyRecipe("addition", error_rate=1.5)
    with pytest.raises(ValueError, match="at least two distinct"):
        Recipe(families=(FamilyRecipe("addition"), FamilyRecipe("addition")))
    with pytest.raises(ValueError, match="prompts_per_step = 15"):
        dataclasses.replace(Recipe(), grpo=GRPORecipe(prompts_per_step=15))
    with pytest.raises(ValueError, match="grpo.loss_type = 'ppo'"):
        dataclasses.replace(Recipe(), grpo=GRPORecipe(loss_type="ppo"))  # type: ignore[arg-type]
