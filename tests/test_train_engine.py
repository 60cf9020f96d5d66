"""optnb.train.engine: learning, exact resume, divergence guard, checkpoint safety, metrics."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from optnb import data
from optnb.train import (
    CheckpointExistsError,
    CheckpointMismatchError,
    FitOptions,
    JsonlLogger,
    LivePlotCallback,
    TrainingDivergedError,
    evaluate,
    fit,
    read_jsonl,
    recipes,
)
from optnb.train.checkpoint import CheckpointError, load_checkpoint
from optnb.train.steps import classifier_step


class Tiny(nn.Module):
    """conv-BN-ReLU-dropout-pool-fc: BN buffers, dropout RNG and momentum all matter for resume."""

    def __init__(self, classes: int = 10, width: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


class NaNAfter(Tiny):
    """Returns NaN logits from the ``bad``-th training forward on."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.calls, self.bad = 0, bad

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.bad:
                return out * float("nan")
        return out


RECIPE = recipes.get("densenet_cifar").replace(epochs=2, batch_size=8, milestones=(0.5,))


def _loaders(seed=0):
    x, y = data.load("synthetic", num_samples=48, image_size=12, seed=1)
    train = data.GpuLoader(x, y, 8, augment=True, cutout=4, seed=seed, padding=2,
                           mean=data.MEAN["synthetic"], std=data.STD["synthetic"])
    test = data.make_loader("synthetic", x[:16], y[:16], 8, train=False)
    return train, test


def _fit(model, run_dir, **opts):
    train, test = _loaders()
    options = FitOptions(steps_per_epoch=3, log_every=1, **opts)
    return fit(model, train, RECIPE, test=test, device="cpu", run_dir=run_dir, options=options)


def _model(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def test_resume_is_bitwise_equal_to_a_straight_run(tmp_path):
    torch.manual_seed(123)
    straight = _model()
    res_a = _fit(straight, tmp_path / "a")
    assert res_a.epochs_run == 2 and res_a.complete
    assert [h["lr"] for h in res_a.history] == pytest.approx([0.1, 0.01])

    torch.manual_seed(123)
    first = _model()
    res_b1 = _fit(first, tmp_path / "b", stop_after=1)
    assert res_b1.epochs_run == 1 and not res_b1.complete
    torch.manual_seed(999)  # a different global RNG and init: the checkpoint must restore both
    second = _model(seed=7)
    res_b2 = _fit(second, tmp_path / "b", resume=True)
    assert res_b2.resumed_from == 1 and res_b2.epochs_run == 2

    for (name, a), (_, b) in zip(straight.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert res_a.history[-1]["train_loss"] == res_b2.history[-1]["train_loss"]
    assert res_a.history[-1]["test_loss"] == res_b2.history[-1]["test_loss"]
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and state["data"]["epoch"] == 2
    assert state["optimizer"]["state"][0]["momentum_buffer"].abs().sum() > 0


def test_the_loss_is_float64_for_a_float64_network_and_fp32_under_bf16_autocast():
    """The cross-entropy sees bf16 logits upcast to fp32, and float64 ones as they are: a float64
    network's loss and gradients stay float64 (the numerical checks compare in float64)."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 0])
    net = nn.Linear(6, 3).double()
    step = classifier_step(net, torch.optim.SGD(net.parameters(), lr=0.0), amp=False)
    loss, logits = step.forward_loss(x.double(), y)
    assert loss.dtype == torch.float64 and logits.dtype == torch.float64
    exact = -torch.log_softmax(logits, 1).gather(1, y[:, None]).mean()
    assert abs(loss.item() - exact.item()) < 1e-15
    net32 = nn.Linear(6, 3)
    bf16 = classifier_step(net32, torch.optim.SGD(net32.parameters(), lr=0.0), amp=True)
    loss, logits = bf16.forward_loss(x, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32


def test_a_finished_fit_frees_its_step_without_a_collection(tmp_path):
    """The step (network wrapper, optimiser) goes with the last reference, not at the next cyclic
    collection: under DDP a wrapper left for the collector keeps the process group's threads alive
    (``distributed.shutdown``), and on a GPU it holds the optimiser state."""
    built = []

    def make_step(net, optimizer, amp):
        step = classifier_step(net, optimizer, amp)
        built.append(weakref.ref(step))
        return step

    train, test = _loaders()
    gc.disable()
    try:
        fit(_model(), train, RECIPE, test=test, device="cpu", run_dir=tmp_path, make_step=make_step,
            options=FitOptions(steps_per_epoch=2))
        assert len(built) == 1 and built[0]() is None
    finally:
        gc.enable()


def test_finished_checkpoint_is_only_evaluated_again(tmp_path):
    _fit(_model(), tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    again = _fit(_model(seed=3), tmp_path, resume=True)
    assert again.resumed_from == 2 and again.epochs_run == 2
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = NaNAfter(bad=5)  # epoch 1 = forwards 1-3 are fine, epoch 2 fails at its 2nd step
    with pytest.raises(TrainingDivergedError) as err:
        _fit(model, tmp_path)
    msg = str(err.value)
    assert "loss is nan at epoch 2, step 5" in msg and str(tmp_path / "checkpoint.pt") in msg
    assert "(epoch 1/2) is kept" in msg and "\n" not in msg
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_nan_in_first_epoch_writes_nothing(tmp_path):
    with pytest.raises(TrainingDivergedError, match="no checkpoint was written"):
        _fit(NaNAfter(bad=2), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_fresh_start_never_overwrites_a_checkpoint(tmp_path):
    _fit(_model(), tmp_path, stop_after=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointExistsError, match="already exists .*resume"):
        _fit(_model(), tmp_path)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage, not a zip")
    with pytest.raises(CheckpointError, match="corrupt"):
        _fit(_model(), tmp_path, resume=True)
    assert path.read_bytes() == b"garbage, not a zip"


def test_checkpoint_of_another_run_is_refused(tmp_path):
    _fit(_model(), tmp_path, stop_after=1, identity={"model": "resnet56"})
    with pytest.raises(CheckpointMismatchError, match="model: checkpoint 'resnet56' vs requested"):
        _fit(_model(), tmp_path, resume=True, identity={"model": "hbnet56"})


def test_metrics_jsonl_and_live_plot(tmp_path):
    png = tmp_path / "curves.png"
    cbs = [JsonlLogger(tmp_path / "metrics.jsonl"), LivePlotCallback("off", save_to=png)]
    train, test = _loaders()
    fit(_model(), train, RECIPE, test=test, device="cpu", callbacks=cbs,
        options=FitOptions(steps_per_epoch=3, log_every=1))
    steps = read_jsonl(tmp_path / "metrics.jsonl", "step")
    epochs = read_jsonl(tmp_path / "metrics.jsonl", "epoch")
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert {"train_loss", "test_error", "lr", "images_per_s"} <= set(epochs[0])
    assert read_jsonl(tmp_path / "metrics.jsonl", "end")[0]["epochs"] == 2
    assert png.stat().st_size > 1000


def test_engine_learns_the_embedded_digits():
    """Real data a CNN can learn: 3 epochs of a tiny CNN reach under 20 % error (chance: 90 %)."""
    torch.manual_seed(0)
    x, y = data.load("embedded")
    xt, yt = data.load("embedded", train=False)
    train = data.make_loader("embedded", x, y, 64, augment=False, seed=0)
    test = data.make_loader("embedded", xt, yt, 256, train=False)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 10))
    recipe = RECIPE.replace(epochs=3, milestones=(0.9,), lr=0.02)
    result = fit(model, train, recipe, test=test, device="cpu")
    assert result.final["test_error"] < 20.0
    assert result.final["train_loss"] < result.history[0]["train_loss"]


def test_evaluate_top1_top5():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.arange(10.0).repeat(len(x), 1)  # always ranks 9, 8, 7, 6, 5

    xs = torch.zeros(4, 3, 2, 2)
    ys = torch.tensor([9, 5, 4, 0])
    out = evaluate(Fixed(), [(xs, ys)], torch.device("cpu"))
    assert out["acc"] == 25.0 and out["top5_acc"] == 50.0 and out["n"] == 4
