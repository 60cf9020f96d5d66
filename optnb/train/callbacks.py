"""The callback protocol of ``fit``, and its callbacks: the JSONL log, the live plot, progress.

Callbacks observe; they never change the training (the step does that), so in a distributed run
only rank 0 calls them. ``fit`` calls, in order: ``on_fit_start(info)``, ``wrap_epochs(epochs)``,
then per epoch ``on_step(step, metrics)`` every ``log_every`` steps, ``stop_reason(history)`` and
``on_epoch_end(epoch, metrics)`` just before the epoch's checkpoint is written, and finally
``on_fit_end(result)``. The one influence a callback has: ``stop_reason`` may end the fit after the
epoch (e.g. the DARTS+ rule, ``optnb.nas.collapse.EarlyStop``); ``fit`` then records the reason
as the epoch's ``stopped_early``, writes the checkpoint and stops on every rank.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from optnb.live import LivePlot, progress

LOG_NAME = "metrics.jsonl"


class Callback:
    """No-op base class of the protocol; override what you need."""

    def on_fit_start(self, info: dict[str, Any]) -> None:
        pass

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, result: Any) -> None:
        pass

    def stop_reason(self, history: Sequence[dict[str, Any]]) -> str | None:
        """Why the fit should stop after the epoch just finished (``history[-1]``), or None."""
        return None

    def wrap_epochs(self, epochs: Iterable[int]) -> Iterable[int]:
        return epochs


class JsonlLogger(Callback):
    """One JSON object per line: ``{"kind": ..., ...}``. Each fit writes a start record (the fit's
    ``info``; its ``kind`` is the info's own, e.g. ``train``/``search``/``evaluate``, which readers
    such as ``optnb.nas.stability`` look for, else ``start``), then ``step`` and ``epoch`` records,
    then ``end``.

    The log mirrors the checkpoint: at the start of a fit, records the checkpoint does not cover
    (written after the last checkpoint by a run that then crashed or was killed) are dropped, and a
    fresh start empties the file; so after a resume every step and epoch appears once, as in an
    uninterrupted run. Lines are written through as they come (line buffered; epoch lines are also
    fsynced): a killed process loses nothing it logged, and the logger of a crashed fit that lingers
    (a notebook keeps the traceback) holds no buffered lines to write over the next fit's log later.
    ``read_jsonl`` reads it back, skipping a torn last line.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def _write(self, record: dict[str, Any], sync: bool = False) -> None:
        self._fh.write(json.dumps(record, allow_nan=True) + "\n")
        if sync:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def on_fit_start(self, info: dict[str, Any]) -> None:
        epoch, step = info.get("start_epoch", 0), info.get("start_step", 0)
        kept = [r for r in read_jsonl(self.path) if _covered(r, epoch, step)] if epoch else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in on_fit_end
        for record in kept:
            self._write(record)
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


def _covered(record: dict[str, Any], epoch: int, step: int) -> bool:
    """Whether a log record describes training up to the checkpoint (epoch ``epoch``, step ``step``)."""
    return record.get("epoch", 0) <= epoch and record.get("step", 0) <= step


def read_jsonl(path: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics file (optionally of one ``kind``); a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and (kind is None or record.get("kind") == kind):
            out.append(record)
    return out


class LivePlotCallback(Callback):
    """Loss per step, and the epoch's train loss and held-out loss/accuracy, on a ``LivePlot``."""

    def __init__(self, mode: str = "off", save_to: str | os.PathLike | None = None,
                 title: str = "", min_interval: float = 0.5) -> None:
        self.plot = LivePlot(mode=mode, save_to=save_to, title=title, min_interval=min_interval)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.plot.update(step, loss=metrics.get("loss"))

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        held_out = {k: v for k, v in metrics.items()
                    if k.endswith(("_loss", "_acc")) and not k.startswith(("train", "search"))}
        self.plot.update(metrics["step"], force=True, train_loss=metrics.get("train_loss"),
                         train_acc=metrics.get("train_acc"), **held_out)

    def on_fit_end(self, result: Any) -> None:
        self.plot.close()


class ProgressCallback(Callback):
    """Epoch progress through ``optnb.live.progress`` plus a one-line summary per epoch."""

    def __init__(self, mode: str = "off", desc: str = "epochs", total: int | None = None,
                 verbose: bool = True) -> None:
        self.mode, self.desc, self.total, self.verbose = mode, desc, total, verbose

    def wrap_epochs(self, epochs: Iterable[int]) -> Iterator[int]:
        return progress(epochs, total=self.total, desc=self.desc, mode=self.mode)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.verbose:
            errors = "".join(f" {k} {v:.2f}%" for k, v in metrics.items()
                             if k.endswith("_error") and "top5" not in k and v is not None)
            print(f"epoch {epoch + 1}: train_loss {metrics['train_loss']:.4f} "
                  f"lr {metrics['lr']:.4g}{errors} ({metrics['epoch_s']:.1f} s, "
                  f"{metrics['images_per_s']:.0f} img/s)", flush=True)
