"""The special cases of Section 10, checked numerically on real models.

* ResNet is HBNet with ``beta = 0`` (eq. (10) without the momentum term): same weights, same
  output, bit for bit.
* DenseNet is AGDNet with every coefficient ``c_{k,j} = 1`` (``coefficients="ones"``).
* AGDNet with fixed coefficients is a DenseNet whose consumer BatchNorms have gamma and beta
  multiplied by ``c_{k,j}`` (:func:`densenet_twin`): the same function, bit for bit.
* ADMMNet's update rule is linearized ADMM (6) mapped by Lemma 1 (:func:`admm_step_deviation`).
* Why the coefficients sit after BatchNorm: training-mode BN removes a positive scale placed
  before it, ``BN(c u) = BN(u)`` up to its ``eps`` (appendix note, Section 5.4).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from optnb.models.cifar_admmnet import admm_step
from optnb.models.cifar_densenet import CifarAGDNet, CifarDenseNet
from optnb.models.registry import build, spec
from optnb.models.scaled_norm import ScaledBatchNorm2d
from optnb.theory.algorithms import admm_linearized
from optnb.theory.equivalence import Lemma1Cost
from optnb.theory.spd import random_spd

__all__ = ["admm_step_deviation", "bn_cancels_prescaling", "compare_outputs", "densenet_twin",
           "paired", "special_case_report"]

_EXTRA_KEYS = ("beta", "coefficients")  # learnable extras a baseline state_dict lacks


def paired(baseline: str, variant: str, seed: int = 0, **variant_options: Any
           ) -> tuple[nn.Module, nn.Module]:
    """Build ``baseline`` and ``variant`` and copy the baseline's weights into the variant."""
    torch.manual_seed(seed)
    base = build(baseline)
    other = build(variant, **variant_options)
    missing, unexpected = other.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in missing if k.rsplit(".", 1)[-1] not in _EXTRA_KEYS]
    if unexpected or stray:
        raise ValueError(
            f"{variant} does not share {baseline}'s weights: missing {stray}, "
            f"unexpected {list(unexpected)}"
        )
    return base, other


def densenet_twin(agdnet: CifarAGDNet) -> CifarDenseNet:
    """The DenseNet that computes what ``agdnet`` computes: every ``ScaledBatchNorm2d`` becomes a
    plain BatchNorm with gamma and beta multiplied by its channel scale, everything else copied.

    The identity AGDNet = DenseNet with scaled BN affine parameters (eq. (12) on DenseNet's
    skeleton); with learnable coefficients it holds at their current values.
    """
    twin = CifarDenseNet(agdnet.depth, agdnet.growth_rate, agdnet.fc.out_features,
                         agdnet.block1[0].dropout, agdnet.block_inputs[0], agdnet.conv0.in_channels)
    twin.to(device=agdnet.fc.weight.device, dtype=agdnet.fc.weight.dtype)
    state = {k: v for k, v in agdnet.state_dict().items() if not k.endswith(".coefficients")}
    with torch.no_grad():
        for name, module in agdnet.named_modules():
            if isinstance(module, ScaledBatchNorm2d):
                scale = module.channel_scale().to(module.weight.dtype)
                state[f"{name}.weight"] = module.weight * scale
                state[f"{name}.bias"] = module.bias * scale
    twin.load_state_dict(state)
    twin.train(agdnet.training)
    return twin


def admm_step_deviation(activation: str = "softplus", size: int = 6, steps: int = 12,
                        seed: int = 0) -> float:
    """ADMMNet's own update rule (``cifar_admmnet.admm_step``, eq. (13)) with the exact layer
    ``Phi(W z)`` of a random SPD ``W``, against linearized ADMM (6) on the Lemma 1 cost mapped back
    by ``z = U^{-1} x`` (``x <-> z'``, ``y <-> z``, ``lambda <-> s``), in float64.

    Returns the largest deviation over all iterates, relative to the largest feature (round-off:
    about 1e-15).
    """
    cost = Lemma1Cost(random_spd(size, rng=seed), activation)
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(3, size, generator=gen, dtype=torch.float64)
    states = [(z0, z0, torch.zeros_like(z0))]
    for _ in range(steps):
        states.append(admm_step(cost.layer, *states[-1]))
    ours = [torch.stack(stream) for stream in zip(*states)]
    it = admm_linearized(cost.grad, cost.to_x(z0), steps)
    theirs = [cost.to_z(it.x), cost.to_z(it.y), cost.to_z(it.lam)]
    scale = max(float(t.abs().max()) for t in ours)
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs)) / scale


def compare_outputs(a: nn.Module, b: nn.Module, x: Tensor, train: bool = True) -> dict[str, Any]:
    """Run both models on ``x`` (train mode by default: batch statistics) and compare."""
    a.train(train)
    b.train(train)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    return {
        "bitwise_equal": bool(torch.equal(ya, yb)),
        "max_abs_diff": float((ya - yb).abs().max()),
    }


def bn_cancels_prescaling(scale: float = 1.282, seed: int = 0) -> float:
    """``max |BN(scale u) - BN(u)|`` for training-mode BatchNorm in float64 (``eps = 1e-5``).

    Nonzero only through ``eps``: a coefficient placed before BN is (almost) a no-op.
    """
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(16, 4, 6, 6, generator=gen, dtype=torch.float64)
    norm = nn.BatchNorm2d(4).double().train()
    with torch.no_grad():
        return float((norm(scale * u) - norm(u)).abs().max())


def special_case_report(
    hb_pair: tuple[str, str] = ("resnet20", "hbnet20"),
    agd_pair: tuple[str, str] = ("densenet22", "agdnet22"),
    beta: float = 0.5,
    hb_boundary: str = "restart",
    batch: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Variant vs baseline with identical weights on one random batch, in train mode.

    Rows: HBNet(beta=0), HBNet(beta), AGDNet(ones), AGDNet(agd), each with ``bitwise_equal`` and
    ``max_abs_diff`` of the logits.
    """
    cases = [
        (hb_pair, {"beta": 0.0, "hb_boundary": hb_boundary}, "special case: equals ResNet"),
        (hb_pair, {"beta": beta, "hb_boundary": hb_boundary}, "momentum on: differs"),
        (agd_pair, {"coefficients": "ones"}, "special case: equals DenseNet"),
        (agd_pair, {"coefficients": "agd"}, "AGD coefficients: differs"),
    ]
    rows = []
    for (base_name, variant_name), options, meaning in cases:
        size = spec(base_name).input_size
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 3, size, size, generator=gen)
        base, variant = paired(base_name, variant_name, seed, **options)
        rows.append({"baseline": base_name, "variant": variant_name, "options": options,
                     "meaning": meaning, **compare_outputs(base, variant, x)})
    return rows
