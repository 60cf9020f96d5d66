"""Recipes as data (paper §8 = DenseNet's strategy), profile budgets and row plans."""

from __future__ import annotations

import pytest

from optnb.train import RecipeError, plan_row, recipes
from optnb.train.params import NB06, NB07


def test_densenet_cifar_recipe_is_the_papers():
    r = recipes.get("densenet_cifar")
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.nesterov, r.weight_decay) == \
        (300, 64, 0.1, 0.9, True, 1e-4)
    assert r.milestone_epochs() == [150, 225]
    assert [r.lr_at(e) for e in (0, 149, 150, 224, 225, 299)] == \
        pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert r.dropout(augment=False) == 0.2 and r.dropout(augment=True) == 0.0


def test_resnet_cifar_uses_densenets_strategy():
    a, b = recipes.get("resnet_cifar").to_dict(), recipes.get("densenet_cifar").to_dict()
    assert {k: v for k, v in a.items() if k not in ("name", "source")} == \
        {k: v for k, v in b.items() if k not in ("name", "source")}
    assert recipes.for_model("hbnet110", "cifar100").name == "resnet_cifar"
    assert recipes.for_model("agdnet40", "cifar10").name == "densenet_cifar"


def test_imagenet_default_and_newton_design_variant():
    r = recipes.get("imagenet")
    assert (r.epochs, r.batch_size, r.milestone_epochs(), r.resolution) == (90, 256, [30, 60], 224)
    v = recipes.get("imagenet:newton_design")
    assert (v.epochs, v.milestone_epochs(), v.nesterov) == (100, [30, 60, 90], False)
    assert recipes.for_model("resnet50", "imagenet").name == "imagenet"


def test_recipe_errors_name_the_choices():
    with pytest.raises(RecipeError, match="unknown recipe 'sgd'; valid: densenet_cifar"):
        recipes.get("sgd")
    with pytest.raises(RecipeError, match="no variant 'fast'; valid: newton_design"):
        recipes.get("imagenet:fast")
    with pytest.raises(RecipeError, match="unknown recipe field"):
        recipes.get("imagenet").replace(epoch=3)
    with pytest.raises(RecipeError, match="unknown profile 'huge'"):
        recipes.budget("huge", recipes.get("imagenet"))


def test_profiles_shorten_the_schedule():
    r = recipes.get("densenet_cifar")
    assert recipes.budget("paper", r).epochs_for(r) == 300
    assert recipes.budget("quick", r).epochs_for(r) == 30
    smoke = recipes.budget("smoke", r)
    assert smoke.epochs_for(r) == 2 and smoke.steps_per_epoch and smoke.tiny_model
    assert r.milestone_epochs(30) == [15, 22] and r.milestone_epochs(1) == [1]


def test_row_plans():
    dense = plan_row("densenet40", "cifar10", augment=False, profile="paper")
    assert dense.model_options == {"dropout": 0.2} and dense.trained_model == "densenet40"
    assert (dense.epochs, dense.batch_size, dense.resolution) == (300, 64, 32)
    assert plan_row("densenet40", "cifar10", augment=True, profile="paper").model_options == \
        {"dropout": 0.0}
    assert plan_row("hbnet110", "cifar10", augment=False, profile="paper").model_options == {}
    smoke = plan_row("agdnet52", "embedded", profile="smoke")
    assert smoke.trained_model == "agdnet10" and smoke.epochs == 2
    # a budget's smaller batch scales the lr linearly (0.1 at 64 -> 0.05 at 32)
    assert (smoke.batch_size, smoke.recipe.lr) == (32, pytest.approx(0.05))
    assert plan_row("resnet56", "cifar10", profile="paper", batch_size=128).recipe.lr == \
        pytest.approx(0.2)
    assert plan_row("resnet110", "embedded", profile="smoke").trained_model == "resnet20"


def test_smoke_hbnet_stand_in_carries_momentum():
    """The smoke stand-in must differ from its ResNet: hbnet8 with restart boundaries would not."""
    from optnb import models

    tiny = models.build(plan_row("hbnet56", "embedded", profile="smoke").trained_model)
    assert sum(tiny.momentum_blocks) >= 3
    assert sum(models.build("hbnet8").momentum_blocks) == 0  # why depth 8 is not used
    big = plan_row("resnet50", "imagenet", profile="quick")
    assert (big.resolution, big.epochs, big.trained_model) == (128, 9, "resnet50")
    assert plan_row("resnet50", "imagenet", profile="paper").resolution == 224
    assert plan_row("resnet50", "embedded", profile="smoke").resolution == 32


def test_notebook_specs_validate():
    assert "hbnet56" in NB06["MODEL"].valid_choices()
    assert "resnet50" not in NB06["MODEL"].valid_choices()
    assert "agdnet121" in NB07["MODEL"].valid_choices()
    with pytest.raises(ValueError, match="AUGMENT='true'"):
        NB06["AUGMENT"].validate("AUGMENT", "true")
