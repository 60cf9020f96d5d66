"""Device checks of the data loader, the models and the training engine (``optnb.train.fit``).

Tolerances: loader normalisation within 1e-5 of the CPU's; HBNet(beta=0) within 1e-5 of ResNet
(absolute, logits); fused SGD within 1e-4 of foreach SGD after 3 steps; bf16 + channels_last
"2 epochs" against "1 epoch, resume, 1 epoch" within 1e-2 (weights, absolute) and 1 % (loss;
GPU kernels may be non-deterministic); ResNet-20 below 10 % test error on the embedded digits
after 15 epochs (full sizes only; tiny sizes check that a short run completes with finite numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from optnb import data, models
from optnb.train import FitOptions, FitResult, TrainingDivergedError, fit, recipes

pytestmark = pytest.mark.gpu

Report = Callable[..., None]


def _synthetic_loader(x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device,
                      **options: Any) -> data.GpuLoader:
    return data.GpuLoader(x, y, batch, device, mean=data.MEAN["synthetic"],
                          std=data.STD["synthetic"], **options)


def test_loader_on_device(device: torch.device, report: Report) -> None:
    """``GpuLoader`` on the device: normalisation equals the CPU's, a restored state replays the
    same augmented batches exactly, and two rank shards concatenate to the global batch."""
    x, y = data.load("synthetic", num_samples=64, seed=0)
    plain = [_synthetic_loader(x, y, 16, d, augment=False, shuffle=False)
             for d in (torch.device("cpu"), device)]
    diff = max(float((a.cpu() - b.cpu()).abs().max()) for (a, _), (b, _) in zip(*plain))

    aug = _synthetic_loader(x, y, 16, device, augment=True, cutout=8, seed=1)
    list(aug)  # one epoch, so the state is mid-run
    state = aug.state_dict()
    ref = [(a.clone(), b.clone()) for a, b in aug]
    again = _synthetic_loader(x, y, 16, device, augment=True, cutout=8, seed=1)
    again.load_state_dict(state)
    replay = list(again)

    whole = list(_synthetic_loader(x, y, 16, device, seed=2))
    halves = [list(_synthetic_loader(x, y, 8, device, seed=2, rank=r, world_size=2))
              for r in (0, 1)]
    report(normalise_max_diff_vs_cpu=diff)
    assert diff < 1e-5, f"normalised batches differ from the CPU's by {diff:.3g} (> 1e-5)"
    assert len(replay) == len(ref) > 0
    assert all(torch.equal(a, c) and torch.equal(b, e) for (a, b), (c, e) in zip(ref, replay)), \
        "a restored loader state did not replay the same batches"
    assert len(whole) == len(halves[0]) == len(halves[1]) > 0
    for w, a, b in zip(whole, *halves):
        assert torch.equal(torch.cat([a[0], b[0]]), w[0]), "rank shards != the global batch"
        assert torch.equal(torch.cat([a[1], b[1]]), w[1])


def test_hbnet_beta0_equals_resnet(device: torch.device, tiny: bool, report: Report) -> None:
    """HBNet with beta = 0 is ResNet (paper eq. 7): same weights, same logits within 1e-5."""
    depth = 20 if tiny else 56
    torch.manual_seed(0)
    res = models.build(f"resnet{depth}").to(device).eval()
    hb = models.build(f"hbnet{depth}", beta=0.0).to(device).eval()
    hb.load_state_dict(res.state_dict())
    x = torch.randn(8, 3, 32, 32, device=device)
    with torch.no_grad():
        diff = float((res(x) - hb(x)).abs().max())
    report(depth=depth, max_abs_diff=diff)
    assert diff <= 1e-5, f"HBNet-{depth}(beta=0) differs from ResNet-{depth} by {diff:.3g}"


def test_fused_sgd_matches_foreach(device: torch.device, report: Report) -> None:
    """The engine's SGD (fused kernel on CUDA) against the foreach path: 3 Nesterov steps with
    weight decay on ResNet-8 agree within 1e-4 (on a CPU: the default path against foreach)."""
    torch.manual_seed(0)
    nets = [models.build("resnet8").to(device) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(16, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (16,), device=device)
    kinds: tuple[dict[str, bool], dict[str, bool]] = (
        ({"fused": True}, {"foreach": True}) if device.type == "cuda" else ({}, {"foreach": True}))
    for net, kw in zip(nets, kinds):
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=1e-4, **kw)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(*(n.parameters() for n in nets)))
    report(kinds=[next(iter(k), "default") for k in kinds], max_abs_diff=diff)
    assert diff < 1e-4, f"fused and foreach SGD differ by {diff:.3g} after 3 steps (> 1e-4)"


def test_engine_resume_bf16_channels_last(device: torch.device, tiny: bool, tmp_path: Path,
                                          report: Report) -> None:
    """``fit`` with the device's defaults (bf16 autocast + channels_last on CUDA): 2 epochs
    straight against 1 epoch, resume from ``checkpoint.pt``, 1 more epoch."""
    x, y = data.load("synthetic", num_samples=128 if tiny else 2048, seed=0)
    recipe = recipes.get("densenet_cifar").replace(epochs=2, milestones=(0.5,))

    def run(folder: Path, **options: Any) -> FitResult:
        torch.manual_seed(0)
        loader = data.make_loader("synthetic", x, y, 64, device=device, seed=0)
        return fit(models.build("resnet8"), loader, recipe, device=device, run_dir=folder,
                   options=FitOptions(**options))

    straight = run(tmp_path / "straight")
    first = run(tmp_path / "resumed", stop_after=1)
    resumed = run(tmp_path / "resumed", resume=True)
    sa = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    diff = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    la, lb = straight.final["train_loss"], resumed.final["train_loss"]
    report(max_abs_weight_diff=diff, bitwise=diff == 0.0, loss_straight=la, loss_resumed=lb,
           amp_bf16=device.type == "cuda", epoch_s=[r["epoch_s"] for r in straight.history])
    assert first.epochs_run == 1 and resumed.resumed_from == 1 and resumed.epochs_run == 2
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert resumed.final["step"] == straight.final["step"] == 2 * len(x) // 64
    assert math.isfinite(la) and math.isfinite(lb)
    assert diff < 1e-2, f"resumed weights differ from straight ones by {diff:.3g} (> 1e-2)"
    assert abs(la - lb) < 1e-2 * max(1.0, abs(la)), f"train loss {lb:.4f} resumed vs {la:.4f}"


def test_divergence_guard(device: torch.device, tmp_path: Path, report: Report) -> None:
    """lr = 1e6 makes the loss non-finite: ``fit`` raises ``TrainingDivergedError``, saying so."""
    x, y = data.load("synthetic", num_samples=256, seed=0)
    recipe = recipes.get("densenet_cifar").replace(epochs=2, lr=1e6)
    loader = data.make_loader("synthetic", x, y, 64, device=device, seed=0)
    with pytest.raises(TrainingDivergedError, match="training diverged") as err:
        fit(models.build("resnet8"), loader, recipe, device=device, run_dir=tmp_path)
    report(message=str(err.value)[:200])


def test_learns_embedded_digits(device: torch.device, tiny: bool, report: Report) -> None:
    """ResNet-20 on the embedded digits (scikit-learn, upscaled to 32 px): below 10 % test
    error after 15 epochs; tiny sizes: 2 epochs of 3 steps that finish with finite losses."""
    x, y = data.load("embedded")
    xt, yt = data.load("embedded", train=False)
    epochs = 2 if tiny else 15
    torch.manual_seed(0)
    recipe = recipes.get("resnet_cifar").replace(epochs=epochs, batch_size=64)
    train = data.make_loader("embedded", x, y, 64, device=device, seed=0)
    test = data.make_loader("embedded", xt, yt, 256, device=device, train=False)
    result = fit(models.build("resnet20"), train, recipe, test=test, device=device,
                 options=FitOptions(checkpoint=False, steps_per_epoch=3 if tiny else None))
    err = result.final["test_error"]
    report(epochs=epochs, test_error_pct=err, train_s=round(result.train_time_s, 2),
           train_loss=[round(r["train_loss"], 4) for r in result.history])
    assert result.epochs_run == epochs
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert 0.0 <= err <= 100.0 and result.final["test_samples"] == len(yt)
    if not tiny:
        assert err < 10.0, f"ResNet-20 test error {err:.1f} % after {epochs} epochs (>= 10 %)"
