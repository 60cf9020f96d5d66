"""Device checks of ``optnb.nas``: the optimised supernet computes what the naive one does.

Tolerances: grouped mixed ops against naive per-edge ops in fp32 (TF32 off), gradient relative
error below 1e-4 for each space; bf16 autocast logits within 10 % (relative L2) of fp32 and an
optimised search step with a finite loss; DARTS's finite-difference Hessian-vector product
against the exact one is informative (finite, errors recorded: ReLU kinks make the quotient noisy,
see ``architect.mixed_hvp_fd``); 2 search epochs straight against 1 + resume + 1 on the device,
architecture parameters within 1e-3 (GPU kernels may be non-deterministic).

Sizes: the paper's search net (C=16, 8 cells, batch 64, 32 px); tiny: C=4, 3 cells, batch 4, 8 px.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from optnb.nas import architect
from optnb.nas.bench import search_step
from optnb.nas.search import SearchConfig, autocast_factory, search
from optnb.nas.spaces import SearchNetwork

pytestmark = pytest.mark.gpu

Report = Callable[..., None]


@dataclass(frozen=True)
class Size:
    C: int
    layers: int
    batch: int
    side: int


@pytest.fixture(scope="module")
def size(tiny: bool) -> Size:
    return Size(4, 3, 4, 8) if tiny else Size(16, 8, 64, 32)


@pytest.fixture
def batch_of(device: torch.device, size: Size) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    """``batch_of(n)``: seeded random images and labels on the device."""
    gen = torch.Generator().manual_seed(0)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, 3, size.side, size.side, generator=gen).to(device),
                torch.randint(0, 10, (n,), generator=gen).to(device))

    return draw


@pytest.fixture
def no_tf32() -> Iterator[None]:
    """fp32 convolutions and matmuls really in fp32 (a CUDA search turns TF32 on globally)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _rel(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """||a - b|| / ||b|| over all tensors, in float64."""
    fa = torch.cat([x.double().reshape(-1) for x in a])
    fb = torch.cat([x.double().reshape(-1) for x in b])
    return ((fa - fb).norm() / fb.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("space", ["darts", "hb", "agd"])
@pytest.mark.usefixtures("no_tf32")
def test_grouped_mixed_ops_equal_naive_fp32(space: str, device: torch.device, size: Size,
                                            batch_of: Callable, report: Report) -> None:
    """Mixed ops batched into grouped convolutions (``grouped.py``) against DARTS's per-edge
    ops on the same weights: loss and every gradient agree (relative error < 1e-4)."""
    naive = SearchNetwork(space, C=size.C, layers=size.layers, grouped=False).to(device)
    naive.init_arch("random", scale=1.0, generator=torch.Generator().manual_seed(1))
    fast = copy.deepcopy(naive)
    for cell in fast.cells:
        cell.grouped = True
    x, y = batch_of(size.batch)
    la, lb = F.cross_entropy(naive(x), y), F.cross_entropy(fast(x), y)
    ga = torch.autograd.grad(la, list(naive.parameters()))
    gb = torch.autograd.grad(lb, list(fast.parameters()))
    rel = _rel(gb, ga)
    report(loss_diff=abs(la.item() - lb.item()), grad_rel=rel)
    assert math.isfinite(la.item())
    assert abs(la.item() - lb.item()) <= 1e-4 * max(1.0, abs(la.item()))
    assert rel < 1e-4, f"{space}: grouped gradients differ from naive by {rel:.3g} (> 1e-4)"


def test_bf16_close_to_fp32(device: torch.device, size: Size, batch_of: Callable,
                            report: Report) -> None:
    """A bf16-autocast supernet forward (agd space) stays within 10 % of fp32, and one optimised
    search step (the one ``optnb bench --suite nas`` times) has a finite loss."""
    net = SearchNetwork("agd", C=size.C, layers=size.layers).to(device).eval()
    x, y = batch_of(size.batch)
    with torch.no_grad():
        ref = net(x)
        with autocast_factory(device, "bf16")():
            low = net(x).float()
    rel = ((low - ref).norm() / ref.norm()).item()
    step = search_step(net.train(), optimised=True, order=1, device=device)
    xv, yv = batch_of(size.batch)
    out = step.update(x, y, xv, yv)
    report(logits_rel_err=rel, step_loss=out.loss.item(),
           search_val_loss=out.extra["search_val_loss"].item())
    assert bool(torch.isfinite(low).all()), "bf16 logits are not finite"
    assert rel < 0.1, f"bf16 logits differ from fp32 by {rel:.3g} (relative, > 0.1)"
    assert math.isfinite(out.loss.item()) and math.isfinite(out.extra["search_val_loss"].item())


@pytest.mark.usefixtures("no_tf32")
def test_hvp_finite_difference_vs_exact(device: torch.device, size: Size, batch_of: Callable,
                                        report: Report) -> None:
    """Informative: DARTS's central-difference HVP (r = 1e-2, 1e-3) against the double-backward
    one in fp32; both finite, the relative errors recorded (not bounded: see the module doc)."""
    net = SearchNetwork("darts", C=size.C, layers=size.layers).to(device)
    net.init_arch("random", scale=0.5, generator=torch.Generator().manual_seed(2))
    x, y = batch_of(size.batch)
    gen = torch.Generator().manual_seed(3)
    v = {n: torch.randn(p.shape, generator=gen).to(device) for n, p in net.named_weight_parameters()}
    exact = architect.mixed_hvp_exact(net, x, y, v)
    errors = {f"fd_rel_err_r{r:g}": _rel(architect.mixed_hvp_fd(net, x, y, v, r), exact)
              for r in (1e-2, 1e-3)}
    report(exact_norm=float(torch.cat([t.double().reshape(-1) for t in exact]).norm()), **errors)
    assert all(bool(torch.isfinite(t).all()) for t in exact), "the exact HVP is not finite"
    assert all(math.isfinite(e) for e in errors.values()), f"FD HVP not finite: {errors}"


def test_search_resume_on_device(device: torch.device, tiny: bool, size: Size, tmp_path: Path,
                                 report: Report) -> None:
    """``search``: 2 epochs straight against 1 epoch (``epochs_limit=1``), resume from
    ``checkpoint.pt``, 1 more; the architecture parameters agree within 1e-3."""
    gen = torch.Generator().manual_seed(4)
    n = 32 if tiny else 512
    images = torch.randint(0, 256, (n, 3, size.side, size.side), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    cfg = {"C": size.C, "layers": min(size.layers, 5), "batch_size": 8, "epochs": 2, "space": "agd"}
    straight = search(SearchConfig(**cfg), images, labels, device, "synthetic")
    first = search(SearchConfig(epochs_limit=1, **cfg), images, labels, device, "synthetic", tmp_path)
    resumed = search(SearchConfig(**cfg), images, labels, device, "synthetic", tmp_path)
    diff = max((a.double() - b.double()).abs().max().item() for a, b in
               zip(straight.model.arch_parameters(), resumed.model.arch_parameters()))
    report(max_alpha_diff=diff, bitwise=diff == 0.0, resumed_from=resumed.resumed_from,
           epoch_s=[r["epoch_s"] for r in straight.history])
    assert (tmp_path / "checkpoint.pt").is_file()
    assert len(first.history) == 1 and resumed.resumed_from == 1 and resumed.complete
    assert resumed.history[-1]["step"] == straight.history[-1]["step"]
    assert diff < 1e-3, f"resumed architecture parameters differ by {diff:.3g} (> 1e-3)"
