"""The r1zero recipe presets build a real model config and task families, and reject bad settings."""

import dataclasses

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
    # Errors are the majority at prone steps (greedy follows them), self-checks a sampled minority.
    assert all(f.error_rate > 0.5 and 0 < f.self_check_rate < 0.5 for f in recipe.families)
    assert (recipe.eval.k, recipe.eval.temperature, recipe.eval.top_p) == (4, 0.6, 0.95)
    assert recipe.eval.problems_per_family >= 500


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
