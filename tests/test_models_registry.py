"""Registry behaviour of optnb.models: names, options, and clear errors for bad input."""

from __future__ import annotations

import math

import pytest
import torch

from optnb import models
from optnb.models import ModelOptionError, UnknownModelError


def test_names_cover_the_tables_and_split_by_kind():
    cifar, imagenet = models.names("cifar"), models.names("imagenet")
    for name in models.TABLE1_MODELS:
        assert name in cifar
    for name in models.TABLE2_MODELS:
        assert name in imagenet
    assert set(cifar) | set(imagenet) == set(models.names())
    assert not set(cifar) & set(imagenet)


def test_baseline_of_maps_variants_to_their_baselines():
    assert models.baseline_of("hbnet56") == "resnet56"
    assert models.baseline_of("agdnet52") == "densenet52"
    assert models.baseline_of("hbnet101") == "resnet101"
    assert models.baseline_of("agdnet121") == "densenet121"
    assert models.baseline_of("resnet56") == "resnet56"


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownModelError) as err:
        models.build("resnet57")
    message = str(err.value)
    assert "resnet57" in message and "hbnet56" in message and "agdnet121" in message
    assert "\n" not in message
    assert isinstance(err.value, KeyError)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(ModelOptionError, match="valid options: .*num_classes") as err:
        models.build("resnet56", beta=0.5)  # ResNet has no momentum
    assert "'beta'" in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("beta", [math.nan, math.inf, -math.inf, "0.5", None, True])
def test_beta_must_be_a_finite_number(beta):
    with pytest.raises(ModelOptionError, match="beta must be a finite number"):
        models.build("hbnet8", beta=beta, width=4)


def test_beta_checked_for_imagenet_and_agdnet_too():
    with pytest.raises(ModelOptionError, match="beta"):
        models.build("hbnet34", beta=math.nan)
    with pytest.raises(ModelOptionError, match="beta"):
        models.build("agdnet10", beta=math.inf)


def test_unknown_hb_boundary_lists_choices():
    with pytest.raises(ModelOptionError, match="'restart', 'shortcut'"):
        models.build("hbnet8", hb_boundary="project", width=4)
    with pytest.raises(ModelOptionError, match="'restart', 'shortcut'"):
        models.build("hbnet34", hb_boundary="project")


def test_unknown_coefficients_lists_choices():
    with pytest.raises(ModelOptionError, match="'agd', 'ones'"):
        models.build("agdnet10", coefficients="theta")


@pytest.mark.parametrize("name,depth", [("resnet", 21), ("hbnet", 2), ("densenet", 41),
                                         ("agdnet", 4)])
def test_bad_depth_is_a_clear_error(name, depth):
    with pytest.raises(ModelOptionError, match="depth must be"):
        models.build(name, depth=depth)


def test_bad_kind_and_flags():
    with pytest.raises(ModelOptionError, match="valid kinds: cifar, imagenet"):
        models.names("mnist")
    with pytest.raises(ModelOptionError, match="learnable_beta must be True or False"):
        models.build("hbnet8", learnable_beta="yes", width=4)
    with pytest.raises(ModelOptionError, match="dropout"):
        models.build("densenet10", dropout=1.5)


def test_family_names_build_any_depth():
    with torch.device("meta"):
        hb = models.build("hbnet", depth=26)
        dn = models.build("agdnet", depth=16)
    assert hb.n == 4 and len(list(hb.blocks())) == 12
    assert dn.layers_per_block == 4
    with torch.device("meta"):
        assert models.count_params(models.build("resnet", depth=56)) == models.count_params(
            models.build("resnet56"))


def test_same_seed_gives_same_weights_for_baseline_and_variant():
    torch.manual_seed(3)
    base = models.build("resnet14", width=4)
    torch.manual_seed(3)
    variant = models.build("hbnet14", width=4, learnable_beta=True)
    for key, value in base.state_dict().items():
        assert torch.equal(value, variant.state_dict()[key]), key
