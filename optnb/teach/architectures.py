"""Exercises of notebook 05 (Section 5 and Tables 1-2: HBNet from (10), AGDNet from (12), their
size): one HBNet block by hand, the AGD coefficient table ``c_{k,j}`` of a dense block, the
parameter count of a CIFAR ResNet/HBNet of depth 6n + 2.

The checkers compare against the models themselves (:class:`optnb.models.cifar_resnet.BasicBlock`,
:func:`optnb.models.cifar_densenet.agd_coefficients`, the registry's models counted on the meta
device) and recognise the usual mistakes to give a specific hint.
"""

from __future__ import annotations

import numpy as np
import torch

from optnb import models
from optnb.models.cifar_densenet import agd_coefficients
from optnb.models.cifar_resnet import BasicBlock
from optnb.teach.feedback import Exercise, Wrong, as_float64, expect_close, known_mistake
from optnb.theory.algorithms import cumulative_coefficients, h_coefficients, nesterov_betas

NOTEBOOK = "05_hbnet_agdnet"


# ------------------------------------------------------------------------------------- 05.1
def check_hbnet_block(hbnet_block) -> str:
    """05.1: ``hbnet_block(z, z_prev, branch, beta)`` = ``relu(z + branch + beta (z - z_prev))``,
    compared with :meth:`BasicBlock.forward_hb` of a real (float64) block."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # leave the notebook's random stream alone
        block = BasicBlock(4, 4).double()
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
        z = torch.randn(2, 4, 5, 5, generator=gen, dtype=torch.float64)
        older = torch.randn(2, 4, 5, 5, generator=gen, dtype=torch.float64)
        branch = block.residual(z)
        for beta, prev, label in ((0.5, older, "beta = 0.5"), (0.0, older, "beta = 0 (ResNet)"),
                                  (0.9, z, "z_prev = z (first block of a chain)"), (0.99, older, "beta = 0.99")):
            expected, _ = block.forward_hb(z.clone(), prev.clone(), beta)
            zn, pn, bn = z.numpy().copy(), prev.numpy().copy(), branch.numpy().copy()
            found = as_float64(hbnet_block(zn, pn, bn, beta), f"hbnet_block for {label}")
            relu = lambda a: np.maximum(a, 0.0)
            zn, pn, bn = z.numpy(), prev.numpy(), branch.numpy()
            hint = known_mistake(found, [
                (relu(zn + bn) + beta * (zn - pn),
                 "that is the literal (10), momentum='outside'; this notebook's HBNet (the default 'inside') "
                 "adds the momentum before the closing ReLU: relu(z + F(z) + beta (z - z_prev))"),
                (zn + bn + beta * (zn - pn), "close the block with ReLU, as ResNet's block does"),
                (relu(zn + bn + beta * (pn - zn)), "the momentum is beta (z_k - z_{k-1}): current minus previous"),
                (relu(bn + beta * (zn - pn)), "keep ResNet's identity path: the output adds z itself"),
                (relu(zn + bn - beta * pn), "the identity path carries (1 + beta) z, the momentum path -beta z_prev"),
            ], "HBNet's block: relu(z + F(z) + beta (z - z_prev)), F(z) = branch")
            expect_close(found, expected.numpy(), f"hbnet_block for {label}", atol=1e-12, rtol=1e-12, hint=hint)
    return ("relu(z + F(z) + beta (z - z_prev)) equals BasicBlock.forward_hb for beta 0, 0.5, 0.9, 0.99; "
            "beta = 0 and z_prev = z both give ResNet's block.")


# ------------------------------------------------------------------------------------- 05.2
def _shifted(m: int, shift: int) -> np.ndarray:
    """c_{k,j} computed with the momenta off by ``shift`` (a typical indexing mistake)."""
    betas = nesterov_betas(m + 2)
    betas = betas[1:] if shift > 0 else np.concatenate([[0.0], betas[:-1]])
    return cumulative_coefficients(m, betas[: m + 1])


def check_agd_table(agd_table) -> str:
    """05.2: ``agd_table(m)`` is :func:`optnb.models.cifar_densenet.agd_coefficients` of ``m``."""
    for m in (1, 2, 3, 6, 12):
        expected = agd_coefficients(m)
        found = as_float64(agd_table(m), f"agd_table({m})")
        if found.shape != expected.shape:
            hint = ("rows k = 0..m (row 0 is all zeros: layer 0 reads y_0 alone; row m weighs the block output "
                    "read by the transition), columns j = 0..m-1 (the branch outputs)")
            if found.shape == expected.shape[::-1]:
                hint = "transposed: row k is the input of layer k, column j the branch F_j"
            raise Wrong(f"agd_table({m}) has the wrong shape.", expected=f"shape {expected.shape}",
                        found=f"shape {found.shape}", hint=hint)
        hint = known_mistake(found, [
            (h_coefficients(m),
             "that is h_{k,j} of (5), the increments; c is their running sum: c_{k,j} = sum_{i=j+1}^{k} h_{i,j}"),
            (np.tril(np.ones_like(expected), -1),
             "all c_{k,j} = 1 is DenseNet (coefficients='ones'); AGD's come from (5) with Nesterov's momenta"),
            (_shifted(m, +1), "the momenta are off by one: row k+1 of (5) uses beta_{k+1} = theta_{k+1}(1 - "
                              "theta_k)/theta_k, and nesterov_betas(n)[k] is beta_k (beta_0 = beta_1 = 0)"),
            (_shifted(m, -1), "the momenta are off by one: row k+1 of (5) uses beta_{k+1} = theta_{k+1}(1 - "
                              "theta_k)/theta_k, and nesterov_betas(n)[k] is beta_k (beta_0 = beta_1 = 0)"),
        ], "h from (5) row by row (h_{k+1,k} = 1 + beta_{k+1}, h_{k+1,k-1} = beta_{k+1}(h_{k,k-1} - 1), "
           "h_{k+1,j} = beta_{k+1} h_{k,j}), then c_{k,j} = sum_{i<=k} h_{i,j}")
        expect_close(found, expected, f"agd_table({m})", atol=1e-12, rtol=1e-10, hint=hint)
    c = agd_coefficients(3)
    return (f"c_{{k,j}} for blocks of 1 to 12 layers; e.g. layer 3 of a block weighs F_0, F_1, F_2 by "
            f"{c[3, 0]:.3f}, {c[3, 1]:.3f}, {c[3, 2]:.3f} (DenseNet: all 1).")


# ------------------------------------------------------------------------------------- 05.3
def _formula(depth: int, num_classes: int, width: int, *, bn_per_channel: int = 2, conv_bias: bool = False,
             fc_bias: bool = True, option_b: bool = False, n: int | None = None) -> int:
    """ResNet's count with the knobs of the usual mistakes (the defaults give the right count)."""
    n = (depth - 2) // 6 if n is None else n
    conv = lambda cin, cout, k=3: k * k * cin * cout + (cout if conv_bias else 0)
    total = conv(3, width) + bn_per_channel * width
    cin = width
    for planes in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += conv(cin, planes) + conv(planes, planes) + 2 * bn_per_channel * planes
            if option_b and cin != planes:
                total += conv(cin, planes, 1) + bn_per_channel * planes
            cin = planes
    return total + 4 * width * num_classes + (num_classes if fc_bias else 0)


def check_resnet_params(resnet_params) -> str:
    """05.3: ``resnet_params(depth, num_classes, width)`` is the parameter count of
    ``models.build("resnet", ...)`` (and of HBNet, which adds none), counted on the meta device."""
    for depth, num_classes, width, family in ((8, 10, 16, "resnet"), (20, 10, 16, "hbnet"),
                                              (56, 100, 16, "resnet"), (110, 10, 16, "resnet"),
                                              (14, 10, 4, "hbnet")):
        with torch.device("meta"):
            expected = models.count_params(models.build(family, depth=depth, num_classes=num_classes, width=width))
        call = f"resnet_params({depth}, num_classes={num_classes}, width={width})"
        found = resnet_params(depth, num_classes=num_classes, width=width)
        if isinstance(found, bool) or not isinstance(found, (int, np.integer)):
            raise Wrong(f"{call} returned {found!r} of type {type(found).__name__}; a parameter count is an int.",
                        expected=expected, found=found,
                        hint="use integer arithmetic (n = (depth - 2) // 6) and return an int")
        if found == expected:
            continue
        args = (depth, num_classes, width)
        mistakes = [
            (_formula(*args, bn_per_channel=0), "count the BatchNorms: each has gamma and beta, 2 parameters per "
                                                "channel (the stem's BN and two per block)"),
            (_formula(*args, bn_per_channel=4), "running_mean and running_var are buffers, not parameters: a "
                                                "BatchNorm2d(C) has 2C parameters"),
            (_formula(*args, option_b=True), "the shortcuts are option A (subsample and zero-pad): no 1x1 "
                                             "convolution, no parameters"),
            (_formula(*args, conv_bias=True), "the convolutions have bias=False (a BN follows each of them)"),
            (_formula(*args, fc_bias=False), "the final Linear layer has a bias: 4 width x classes + classes"),
            (_formula(*args, n=(depth - 2) // 6 + 1), "off by one block per stage: depth = 6n + 2 (3 stages x n "
                                                      "blocks x 2 convs, plus the stem conv and the FC layer)"),
            (_formula(*args, n=(depth - 2) // 6 - 1), "off by one block per stage: depth = 6n + 2 (3 stages x n "
                                                      "blocks x 2 convs, plus the stem conv and the FC layer)"),
        ]
        hint = next((h for value, h in mistakes if value == found),
                    "stem conv 3x3 (3 -> width) + BN; 3 stages of n blocks, each two 3x3 convs + two BNs, widths "
                    "width, 2 width, 4 width (the first conv of stages 2 and 3 reads the previous width); FC")
        raise Wrong(f"{call} is off by {int(found) - expected:+,}.", expected=f"{expected:,}", found=f"{int(found):,}",
                    hint=hint)
    return ("exact counts for ResNet/HBNet-8 to -110, 10 or 100 classes, widths 4 and 16: ResNet-56 has "
            "853,018 parameters, and the momentum of HBNet adds none.")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("05.1", NOTEBOOK, "one HBNet block by hand", "quick check", minutes=5, points=1,
             check=check_hbnet_block, hint="relu(z + F(z) + beta (z - z_prev))"),
    Exercise("05.2", NOTEBOOK, "the AGD coefficients c_{k,j} of a dense block", "derivation", minutes=15,
             points=3, check=check_agd_table,
             hint="compute h_{k+1,j} of (5) row by row with nesterov_betas, then sum down the columns"),
    Exercise("05.3", NOTEBOOK, "the parameters of a CIFAR ResNet/HBNet of depth 6n + 2", "computation",
             minutes=12, points=2, check=check_resnet_params,
             hint="3x3 convs without bias, BatchNorm with 2 parameters per channel, option-A shortcuts, FC"),
)
