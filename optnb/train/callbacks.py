"""Callbacks of the fit loop: metrics as JSONL, the live plot and progress from ``optnb.live``.

A callback implements any of ``on_fit_start(info)``, ``on_step(step, metrics)``,
``on_epoch_end(epoch, metrics)``, ``on_fit_end(result)`` and ``wrap_epochs(iterable)``. Only
rank 0 calls them in a distributed run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class Callback:
    """No-op base class; override what you need."""

    def on_fit_start(self, info: dict[str, Any]) -> None:
        pass

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, result: Any) -> None:
        pass

    def wrap_epochs(self, epochs: Iterable[int]) -> Iterable[int]:
        return epochs


class JsonlLogger(Callback):
    """Append one JSON object per line: ``{"kind": "step"|"epoch"|"start"|"end", ...}``.

    Lines are flushed and fsynced per epoch, so a crash loses at most the current epoch's steps.
    On resume the file is appended to; ``read_jsonl`` reads it back (skipping a torn last line).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = None

    def _write(self, record: dict[str, Any], sync: bool = False) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in on_fit_end
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")
        if sync:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self._write({"kind": "start", **info}, sync=True)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._write({"kind": "step", "step": step, **metrics})

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self._write({"kind": "epoch", **metrics}, sync=True)

    def on_fit_end(self, result: Any) -> None:
        summary = {k: v for k, v in result.summary().items() if not isinstance(v, (list, dict))}
        self._write({"kind": "end", **summary}, sync=True)
        self._fh.close()
        self._fh = None


def read_jsonl(path: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics file (optionally of one ``kind``); a torn last line is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            out.append(record)
    return out


class LivePlotCallback(Callback):
    """Loss per step and test accuracy per epoch on an ``optnb.live.LivePlot``."""

    def __init__(self, mode: str = "off", save_to: str | os.PathLike | None = None,
                 title: str = "", min_interval: float = 0.5) -> None:
        from optnb.live import LivePlot

        self.plot = LivePlot(mode=mode, save_to=save_to, title=title, min_interval=min_interval)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.plot.update(step, loss=metrics.get("loss"))

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.plot.update(metrics["step"], force=True, train_loss=metrics.get("train_loss"),
                         test_loss=metrics.get("test_loss"), test_acc=metrics.get("test_acc"))

    def on_fit_end(self, result: Any) -> None:
        self.plot.close()


class ProgressCallback(Callback):
    """Epoch progress through ``optnb.live.progress`` plus a one-line summary per epoch."""

    def __init__(self, mode: str = "off", desc: str = "epochs", total: int | None = None,
                 verbose: bool = True) -> None:
        self.mode, self.desc, self.total, self.verbose = mode, desc, total, verbose

    def wrap_epochs(self, epochs: Iterable[int]) -> Iterator[int]:
        from optnb.live import progress

        return progress(epochs, total=self.total, desc=self.desc, mode=self.mode)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.verbose:
            test = metrics.get("test_error")
            test_txt = f" test_error {test:.2f}%" if test is not None else ""
            print(f"epoch {epoch + 1}: train_loss {metrics['train_loss']:.4f} "
                  f"lr {metrics['lr']:.4g}{test_txt} ({metrics['epoch_time_s']:.1f} s, "
                  f"{metrics['images_per_s']:.0f} img/s)", flush=True)
