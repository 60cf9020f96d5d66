"""Checkpoints that cannot lie: a content checksum, one-line refusals that keep the file, and a
metrics log that a resume after a crash truncates to the checkpoint (issue 10, class 3).

Every fault below is injected into a real checkpoint written by ``fit``; each must be refused with
one line naming the file and what to do, the file kept byte for byte, and nothing overwritten.
"""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from optnb import cli, data
from optnb.train import FitOptions, FitResult, fit, read_jsonl, recipes
from optnb.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    CheckpointMismatchError,
    GeneratorState,
    load_checkpoint,
    save_atomic,
)
from optnb.train.steps import classifier_step

TESTS = Path(__file__).resolve().parent
RECIPE = recipes.get("densenet_cifar").replace(epochs=3, batch_size=8, milestones=(0.5,))
STEPS = 3  # per epoch
REMEDIES = ("delete it", "restore it", "another run folder", "restart")


class Net(nn.Module):
    """conv-BN-ReLU-dropout-pool-fc, wide enough that one tensor holds more than 5000 bytes."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)  # 6912 bytes
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


def _fit(run_dir: Path | None, make_step: Callable = classifier_step, **opts: Any) -> FitResult:
    """3 epochs of 3 steps on synthetic images; the state holds a generator, as an evaluation's."""
    torch.manual_seed(0)
    model = Net()
    x, y = data.load("synthetic", num_samples=48, image_size=12, seed=1)
    train = data.GpuLoader(x, y, 8, augment=True, cutout=4, seed=0, padding=2,
                           mean=data.MEAN["synthetic"], std=data.STD["synthetic"])
    test = data.make_loader("synthetic", x[:16], y[:16], 8, train=False)
    state = {"gen": GeneratorState(torch.Generator().manual_seed(0))}
    return fit(model, train, RECIPE, test=test, make_step=make_step, state=state, device="cpu",
               run_dir=run_dir, options=FitOptions(steps_per_epoch=STEPS, log_every=1, **opts))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a sound checkpoint after epoch 1 of 3."""
    run = tmp_path_factory.mktemp("good")
    _fit(run, stop_after=1)
    return (run / CHECKPOINT_NAME).read_bytes()


# --------------------------------------------------------------------------- fault injections

def tensor_span(blob: bytes) -> tuple[int, int]:
    """(offset, size) in the file of the largest tensor's raw bytes (a ``data/N`` zip record)."""
    info = max((i for i in zipfile.ZipFile(io.BytesIO(blob)).infolist() if "/data/" in i.filename),
               key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def garble_tensor(n: int) -> Callable[[Path], None]:
    """Overwrite ``n`` bytes in the middle of the largest tensor with other bytes."""
    def inject(path: Path) -> None:
        blob = bytearray(path.read_bytes())
        start, size = tensor_span(bytes(blob))
        assert size > n
        at = start + (size - n) // 2
        blob[at: at + n] = bytes((b + 97) % 256 for b in blob[at: at + n])
        path.write_bytes(bytes(blob))
    return inject


def overwrite(offset: float, n: int) -> Callable[[Path], None]:
    def inject(path: Path) -> None:
        blob = bytearray(path.read_bytes())
        at = int(len(blob) * offset)
        blob[at: at + n] = bytes((i * 37 + 11) % 256 for i in range(n))
        path.write_bytes(bytes(blob))
    return inject


def edit(change: Callable[[dict], dict], keep_checksum: bool = False) -> Callable[[Path], None]:
    """Load, change, and write again: through ``save_atomic`` (a consistent checksum: another
    writer's bug) or, with ``keep_checksum``, through ``torch.save`` (an edit after the fact)."""
    def inject(path: Path) -> None:
        state = change(torch.load(path, weights_only=True))
        if keep_checksum:
            torch.save(state, path)
        else:
            save_atomic(state, path)
    return inject


def without(key: str) -> Callable[[Path], None]:
    return edit(lambda s: {k: v for k, v in s.items() if k != key})


def with_value(key: str, value: Any) -> Callable[[Path], None]:
    return edit(lambda s: {**s, key: value})


def with_model(change: Callable[[dict], dict]) -> Callable[[Path], None]:
    return edit(lambda s: {**s, "model": change(dict(s["model"]))})


class Evil:
    """A pickled object: the weights-only loader must refuse it."""


def _other_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "not a checkpoint")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _dangling_link(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parent / "gone.pt")


def _history_too_long(s: dict) -> dict:
    return {**s, "history": s["history"] * 2}


def _buffer_shape(s: dict) -> dict:
    optimizer = s["optimizer"]
    return {**s, "optimizer": {**optimizer, "state": {**optimizer["state"], 0: {"momentum_buffer": torch.zeros(2)}}}}


def _nan_weights(m: dict) -> dict:
    return {**m, "conv.weight": m["conv.weight"] * float("nan")}


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    # unreadable
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "truncated_half": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt"),
    "truncated_tail": (lambda p: p.write_bytes(p.read_bytes()[:-64]), "corrupt"),
    "garbled_header": (overwrite(0.0, 200), "corrupt"),
    "random_bytes": (lambda p: p.write_bytes(bytes(range(256)) * 64), "corrupt"),
    "other_zip": (_other_zip, "corrupt"),
    "pickled_object": (lambda p: torch.save({"obj": Evil()}, p), "corrupt"),
    "not_a_dict": (lambda p: torch.save([1, 2], p), "holds a list"),
    "directory": (_directory, "not a file"),
    "dangling_symlink": (_dangling_link, "not a file"),
    # readable, but the content is not what was written
    "garbled_tensor_5000": (garble_tensor(5000), "checksum"),
    "garbled_tensor_8": (garble_tensor(8), "checksum"),
    "edited_epoch": (edit(lambda s: {**s, "epoch": 2}, keep_checksum=True), "checksum"),
    "edited_nan_weights": (edit(lambda s: {**s, "model": _nan_weights(dict(s["model"]))}, True), "checksum"),
    "no_checksum": (edit(lambda s: {k: v for k, v in s.items() if k != "checksum"}, True), "no checksum"),
    "checksum_not_text": (edit(lambda s: {**s, "checksum": 7}, True), "checksum"),
    # consistent checksum, but not an optnb checkpoint of this format
    "other_format": (with_value("format", "other/9"), "not an optnb.checkpoint"),
    "legacy_format": (edit(lambda s: {**{k: v for k, v in s.items() if k != "checksum"},
                                      "format": "optnb.checkpoint/1"}, True), "older optnb"),
    # consistent checksum, inconsistent content
    **{f"missing_{key}": (without(key), f"missing.*{key}")
       for key in ("format", "identity", "epoch", "step", "train_time_s", "wall_s", "history", "model",
                   "optimizer", "data", "rng", "state")},
    "identity_list": (with_value("identity", [1, 2]), "identity"),
    "epoch_text": (with_value("epoch", "1"), "epoch"),
    "epoch_bool": (with_value("epoch", True), "epoch"),
    "step_negative": (with_value("step", -3), "step"),
    "wall_text": (with_value("wall_s", "soon"), "wall_s"),
    "history_int": (with_value("history", 5), "history"),
    "history_too_long": (edit(_history_too_long), "history"),
    "model_list": (with_value("model", [1]), "model"),
    "model_shape": (with_model(lambda m: {**m, "fc.weight": torch.zeros(3, 3)}), "fc.weight"),
    "model_dtype": (with_model(lambda m: {**m, "fc.bias": m["fc.bias"].double()}), "fc.bias"),
    "model_lacks_tensor": (with_model(lambda m: {k: v for k, v in m.items() if k != "bn.running_mean"}),
                           "bn.running_mean"),
    "model_extra_tensor": (with_model(lambda m: {**m, "head.weight": torch.zeros(2)}), "head.weight"),
    "optimizer_groups": (edit(lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": []}}),
                         "does not fit"),
    "optimizer_text": (with_value("optimizer", "sgd"), "optimizer"),
    "optimizer_buffer_shape": (edit(_buffer_shape), "momentum_buffer"),
    "data_garbage": (with_value("data", {"epoch": "x", "seed": None}), "does not fit"),
    "rng_empty": (with_value("rng", {}), "rng"),
    "state_lacks_gen": (with_value("state", {}), "gen"),
    "state_gen_garbage": (with_value("state", {"gen": {"state": torch.zeros(3)}}), "does not fit"),
    # another run's
    "another_run": (edit(lambda s: {**s, "identity": {**s["identity"], "epochs_planned": 9}}), "another run"),
}


def _one_line_with_remedy(msg: str, path: Path) -> None:
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    assert any(r in msg for r in REMEDIES), msg
    assert "weights_only" not in msg, msg  # never the unsafe advice to retry with weights_only=False
    assert "still be loaded" not in msg and "\x1b" not in msg, msg  # nor torch's other advice, nor its colours


def _snapshot(path: Path) -> bytes | str:
    if path.is_symlink():
        return f"link to {os.readlink(path)}"
    return path.read_bytes() if path.is_file() else "directory"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_bad_checkpoint_is_refused_in_one_line_and_kept(fault, good, tmp_path):
    inject, needle = FAULTS[fault]
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(good)
    inject(path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1, "step": 3}\n')
    before = _snapshot(path)
    with pytest.raises(CheckpointError, match=needle) as err:
        _fit(tmp_path, resume=True)
    _one_line_with_remedy(str(err.value), path)
    assert _snapshot(path) == before
    assert (tmp_path / "metrics.jsonl").read_text() == '{"kind": "epoch", "epoch": 1, "step": 3}\n'
    if fault == "another_run":
        assert isinstance(err.value, CheckpointMismatchError)
    if fault in ("directory", "dangling_symlink"):  # even a requested fresh start stops before training
        with pytest.raises(CheckpointError, match="not a file"):
            _fit(tmp_path, restart=True)
        assert _snapshot(path) == before


def test_a_sound_checkpoint_still_resumes_exactly(good, tmp_path):
    straight = _fit(tmp_path / "straight")
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / CHECKPOINT_NAME).write_bytes(good)
    resumed = _fit(tmp_path / "resumed", resume=True)
    assert resumed.resumed_from == 1
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_checksum_is_stored_and_verified(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3).t(), "h": torch.ones(3, dtype=torch.bfloat16),
             "b": torch.tensor([True, False]), "s": torch.tensor(2.5), "e": torch.empty(0, 4),
             "n": {2: [1, 2.0, "x", None, True], "k": (float("nan"), -0.0, 10 ** 30)}}
    path = save_atomic(state, tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["checksum"].startswith("sha256:") and len(raw["checksum"]) == 7 + 64
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    back = load_checkpoint(path)
    assert torch.equal(back["h"], state["h"]) and back["n"][2] == [1, 2.0, "x", None, True]
    save_atomic(back, tmp_path / "again.pt")  # a loaded checkpoint saves to the same checksum
    assert torch.load(tmp_path / "again.pt", weights_only=True)["checksum"] == raw["checksum"]
    for change in ({"w": state["w"] + 1e-7}, {"h": state["h"].float()}, {"s": torch.tensor([2.5])},
                   {"n": {2: [1, 2, "x", None, True], "k": state["n"]["k"]}}, {"extra": 0}):
        save_atomic({**state, **change}, tmp_path / "other.pt")
        other = torch.load(tmp_path / "other.pt", weights_only=True)["checksum"]
        assert other != raw["checksum"], change
    torch.save({**raw, "s": torch.tensor(2.0)}, path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)


def test_unhashable_content_writes_nothing(tmp_path):
    path = save_atomic({"epoch": 1}, tmp_path / "c.pt")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="bad"):
        save_atomic({"epoch": 2, "bad": object()}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# --------------------------------------------------------------------------- the commands

def _cli_args(command: str, results: Path) -> list[str]:
    common = ["--profile", "smoke", "--device", "cpu", "--epochs", "1", "--results-dir", str(results),
              "--run-id", command]
    return {"train": ["train", "--model", "resnet56", "--quiet", "--resume", *common],
            "search": ["search", "--space", "darts", *common],
            "evaluate": ["evaluate", "--genotype", "DARTS_V2", *common]}[command]


def _shape_changed(s: dict) -> dict:
    model = dict(s["model"])
    name = next(k for k, v in model.items() if v.is_floating_point() and v.dim() >= 1)
    model[name] = torch.zeros(*(n + 1 for n in model[name].shape))
    return {**s, "model": model}


CLI_FAULTS = {
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "garbled_tensor_5000": (garble_tensor(5000), "checksum"),
    "missing_model": (without("model"), "missing"),
    "model_shape": (edit(_shape_changed), "model"),
    "pickled_object": (lambda p: torch.save({"obj": Evil()}, p), "corrupt"),
}


@pytest.mark.parametrize("command", ["train", "search", "evaluate"])
def test_commands_refuse_bad_checkpoints_in_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTNB_DOWNLOAD", "0")
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    monkeypatch.delenv("OPTNB_DEBUG", raising=False)
    argv = _cli_args(command, tmp_path)
    assert cli.main(argv) == 0
    path = tmp_path / "runs" / command / CHECKPOINT_NAME
    good = path.read_bytes()
    capsys.readouterr()
    for fault, (inject, needle) in CLI_FAULTS.items():
        path.write_bytes(good)
        inject(path)
        before = path.read_bytes()
        assert cli.main(argv) == 2, fault
        err = capsys.readouterr().err.strip()
        assert err.startswith("optnb: error: ") and needle in err, (fault, err)
        _one_line_with_remedy(err, path)
        assert path.read_bytes() == before, fault
    path.write_bytes(good)
    assert cli.main(argv) == 0  # the sound checkpoint still resumes (it is complete: evaluated again)


# --------------------------------------------------------------------------- the metrics log

class Crash(Exception):
    """Stands for a kill: raised by a step in the middle of an epoch."""


class CrashingStep:
    """A ``ClassifierStep`` that raises on its ``at``-th call (or, with ``marker``, writes the
    marker file and waits to be killed)."""

    def __init__(self, inner: Any, at: int, marker: Path | None = None) -> None:
        self.inner, self.at, self.marker, self.calls = inner, at, marker, 0

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        return self.inner.start_epoch(epoch)

    def end_epoch(self) -> dict[str, Any]:
        return self.inner.end_epoch()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        self.calls += 1
        if self.calls == self.at:
            if self.marker is None:
                raise Crash(f"crash at step {self.at}")
            self.marker.write_text("ready")
            time.sleep(600)
        return self.inner(x, y)


def crashing(at: int, marker: Path | None = None) -> Callable:
    return lambda net, opt, amp: CrashingStep(classifier_step(net, opt, amp), at, marker)


def _records(run_dir: Path) -> tuple[list[int], list[float], list[int]]:
    steps = read_jsonl(run_dir / "metrics.jsonl", "step")
    epochs = read_jsonl(run_dir / "metrics.jsonl", "epoch")
    return [r["step"] for r in steps], [r["loss"] for r in steps], [r["epoch"] for r in epochs]


def test_resume_after_a_crash_mid_epoch_truncates_the_log(tmp_path):
    _fit(tmp_path / "straight")
    straight = _records(tmp_path / "straight")
    assert straight[0] == list(range(1, 3 * STEPS + 1)) and straight[2] == [1, 2, 3]
    run = tmp_path / "crashed"
    with pytest.raises(Crash) as crash:  # step 5 = the 2nd step of epoch 2; the checkpoint is epoch 1's
        _fit(run, make_step=crashing(5))
    assert load_checkpoint(run / CHECKPOINT_NAME)["step"] == STEPS
    resumed = _fit(run, resume=True)
    assert resumed.resumed_from == 1
    del crash  # the crashed run's logger (held by the traceback) goes now, as in a notebook later
    gc.collect()
    assert _records(run) == straight  # same steps and epochs, each once, with the same losses


def test_resume_after_sigkill_mid_epoch_truncates_the_log(tmp_path):
    _fit(tmp_path / "straight")
    straight = _records(tmp_path / "straight")
    run, marker = tmp_path / "killed", tmp_path / "marker"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from pathlib import Path; "
            f"import torch; torch.set_num_threads({torch.get_num_threads()}); "  # as here: the same sums
            f"import test_checkpoint_integrity as t; "
            f"t._fit(Path({str(run)!r}), make_step=t.crashing(5, Path({str(marker)!r})))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OPTNB_HEADLESS": "1"})
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the training process ended before step 5"
            assert time.monotonic() < deadline, "the training process did not reach step 5"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    logged = read_jsonl(run / "metrics.jsonl", "step")
    assert [r["step"] for r in logged][-1] == 4  # epoch 2's first step reached the log before the kill
    resumed = _fit(run, resume=True)
    assert resumed.resumed_from == 1
    assert _records(run) == straight


def test_resume_drops_a_torn_last_line_and_records_past_the_checkpoint(tmp_path):
    _fit(tmp_path, stop_after=1)
    with (tmp_path / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"kind": "step", "step": 4, "epoch": 1.33, "loss": 9.0}) + "\n")
        fh.write(json.dumps({"kind": "epoch", "epoch": 2, "step": 6}) + "\n")
        fh.write('{"kind": "step", "step": 5, "lo')
    _fit(tmp_path, resume=True)
    steps, losses, epochs = _records(tmp_path)
    assert steps == list(range(1, 3 * STEPS + 1)) and epochs == [1, 2, 3] and 9.0 not in losses
