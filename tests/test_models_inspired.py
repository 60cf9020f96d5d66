"""optnb.models.inspired: the GD/HB/AGD-inspired nets share parameters and differ in the skip."""

from __future__ import annotations

import pytest
import torch

from optnb.models.inspired import KINDS, InspiredNet


def _tiny(kind, beta=0.5, agd_betas=None, branch="mlp"):
    torch.manual_seed(0)
    size = 6 if branch == "conv" else 4
    return InspiredNet(kind, 3, 5, 8, 4, branch, size, beta, agd_betas).double().eval()


@pytest.mark.parametrize("branch", ["mlp", "conv"])
def test_nets_share_parameters_and_reduce_to_resnet(branch):
    gd, hb, agd = (_tiny(k, branch=branch) for k in KINDS)
    count = [sum(p.numel() for p in n.parameters()) for n in (gd, hb, agd)]
    assert count[0] == count[1] == count[2]
    for a, b in zip(gd.state_dict().values(), hb.state_dict().values()):
        assert torch.equal(a, b)  # same seed -> same initial weights
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    out = gd(x)
    torch.testing.assert_close(_tiny("hb", 0.0, branch=branch)(x), out, atol=0, rtol=0)
    torch.testing.assert_close(_tiny("agd", agd_betas=0.0, branch=branch)(x), out, atol=0, rtol=0)
    assert (hb(x) - out).abs().max() > 1e-6 and (agd(x) - out).abs().max() > 1e-6


def test_hb_net_matches_hand_unrolled_recursion():
    net = _tiny("hb", 0.3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    z = net.stem(x.flatten(1))
    prev = z
    for block in net.blocks:
        prev, z = z, z + block(z) + 0.3 * (z - prev)
    ref = net.fc(torch.relu(net.head_norm(z)))
    torch.testing.assert_close(net(x), ref, atol=1e-13, rtol=0)


def test_bad_kind():
    with pytest.raises(ValueError, match="valid: gd, hb, agd"):
        InspiredNet("adam", 3, 10, 8, 2)
