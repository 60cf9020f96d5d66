"""The dress rehearsal's overlay, inside the run: what a rehearsed paper run does differently.

``optnb reproduce --profile paper --rehearse`` (``optnb.experiments.rehearsal``) executes the
paper plan's own runs -- the same notebooks, ``optnb train`` under torchrun, the same recipes and
schedule objects over the full epoch count -- and changes only how *much* each run does. It
says so through one explicit input: ``$OPTNB_REHEARSAL``, the path of a JSON file
(:class:`Overlay`) that the rehearsal writes and sets for its kernels and torchrun jobs. Nothing
else turns the overlay on, and it only applies to the ``paper`` profile (any other profile with
``$OPTNB_REHEARSAL`` set is refused in one line), so a normal paper run never picks it up.

Inside a run the overlay is activated by ``optnb.experiments.resolve`` (:func:`activate`) and
changes exactly this:

* ``optnb.train.fit`` caps the steps per epoch, stops after ``stop_after`` epochs in total and
  evaluates every epoch on at most ``eval_samples`` held-out images (:func:`fit_options`); the
  schedule object keeps its full length, so the lr at a rehearsed step is the paper's lr there;
* the loaders take a smaller per-step batch where the paper's does not fit this machine
  (:func:`step_batch`, decided and explained by the rehearsal); the recipe (batch, lr) is kept;
* the generated CIFAR files of the rehearsal's data root are trusted (their md5 cannot be the
  official one; ``optnb.data.fake.trusted_rehearsal_checksums``), torch uses ``threads`` threads;
* the sidecar says ``rehearsal: true``; the run writes the configuration it used
  (:func:`note_configuration`, ``rehearsal.json``) and its process id (:func:`note_process`, so
  the rehearsal can kill it hard and check that it resumes).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from optnb.specs import ParameterError

#: the one input that turns the overlay on: the path of the overlay JSON file
ENV = "OPTNB_REHEARSAL"
#: the profile a rehearsal rehearses
PROFILE = "paper"
#: what a rehearsed run writes into its folder: the configuration it used
CONFIG_FILE = "rehearsal.json"
#: the folder (in the run folder) of the process ids of a rehearsed run
PID_DIR = ".rehearsal-pids"


@dataclass(frozen=True)
class Overlay:
    """How much a rehearsed run does (the rest is the paper's)."""

    steps_per_epoch: int = 1
    stop_after: int = 2
    eval_samples: int = 64
    threads: int = 1
    #: ``"train:<model>"``, ``"search:<space>"``, ``"evaluate:cifar"``, ``"evaluate:imagenet"`` ->
    #: the per-step batch, where it is smaller than the paper's
    step_batches: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps_per_epoch", "stop_after", "eval_samples", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"rehearsal overlay: {name} must be an int >= 1, got {value!r}")
        bad = {k: v for k, v in self.step_batches.items()
               if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ParameterError(f"rehearsal overlay: step_batches must map names to ints >= 1, got {bad}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "step_batches": dict(self.step_batches)}

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        return path


def read(path: str | os.PathLike) -> Overlay:
    """The overlay in ``path``; a missing or malformed file is a one-line ``ParameterError``."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ParameterError(f"${ENV}={path}: cannot read the rehearsal overlay ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:120]})") from None
    fields = {f for f in Overlay.__dataclass_fields__}
    if not isinstance(raw, dict) or set(raw) - fields:
        extra = sorted(set(raw) - fields) if isinstance(raw, dict) else type(raw).__name__
        raise ParameterError(f"${ENV}={path}: not a rehearsal overlay ({extra}); valid keys: "
                             f"{', '.join(sorted(fields))}")
    return Overlay(**raw)


def requested() -> Overlay | None:
    """The overlay ``$OPTNB_REHEARSAL`` names, or None when it is not set."""
    path = os.environ.get(ENV, "").strip()
    return read(path) if path else None


#: this process's active overlay (set by :func:`activate`)
_active: Overlay | None = None
_trust = contextlib.ExitStack()


def activate(profile: str) -> Overlay | None:
    """Turn the overlay on for this process when ``$OPTNB_REHEARSAL`` asks for it (called by
    ``optnb.experiments.resolve`` with the run's effective profile); returns it, or None."""
    global _active
    overlay = requested()
    if overlay is None:
        return None
    if profile != PROFILE:
        raise ParameterError(f"${ENV} is set (a dress rehearsal), but this run's profile is {profile!r}; "
                             f"a rehearsal rehearses the {PROFILE} profile only: unset ${ENV} or use "
                             f"PROFILE={PROFILE!r}")
    import torch  # deferred: resolve imports torch anyway (seeding)

    from optnb.data.fake import trusted_rehearsal_checksums
    from optnb.paths import data_dir

    if _active is None:  # trusted for the life of the process (a kernel, a torchrun worker)
        _trust.enter_context(trusted_rehearsal_checksums(data_dir()))
    torch.set_num_threads(overlay.threads)
    _active = overlay
    return overlay


#: what names a configuration's settings, as "module:function" (imported when a rehearsed run
#: records its configuration; the function lives in a higher layer, ``optnb.experiments``)
DESCRIBER = "optnb.experiments.paper_config:describe"


def _describe(kind: str, config: Any, **options: Any) -> dict[str, Any]:
    module, name = DESCRIBER.split(":")
    return getattr(importlib.import_module(module), name)(kind, config, **options)


def deactivate() -> None:
    """Turn the overlay off again (tests; a process that rehearsed ends anyway)."""
    global _active
    _active = None
    _trust.close()


def active() -> Overlay | None:
    """The overlay of this process, or None (always None outside a rehearsal)."""
    return _active


def fit_options(options: Any) -> Any:
    """``optnb.train.FitOptions`` capped by the active overlay (unchanged without one): at most
    ``steps_per_epoch`` steps, a stop after ``stop_after`` epochs in total, a held-out evaluation
    every epoch on at most ``eval_samples`` images. Smaller caps the caller set are kept."""
    if _active is None:
        return options

    def least(value: int | None, cap: int) -> int:
        return cap if value is None else min(value, cap)

    return replace(options, steps_per_epoch=least(options.steps_per_epoch, _active.steps_per_epoch),
                   stop_after=least(options.stop_after, _active.stop_after),
                   eval_samples=least(options.eval_samples, _active.eval_samples), eval_every=1)


def step_batch(key: str, batch: int) -> int:
    """The batch a loader takes per step for ``key`` (see :class:`Overlay`): ``batch``, or the
    rehearsal's smaller one."""
    if _active is None:
        return batch
    return min(batch, _active.step_batches.get(key, batch))


def expected_epochs(planned: int) -> int:
    """Epochs a run trains before it returns: ``planned``, or the rehearsal's stop."""
    return planned if _active is None else min(planned, _active.stop_after)


def note_process(run_dir: str | os.PathLike) -> None:
    """In a rehearsal, leave this process's id in the run folder (the rehearsal kills it hard)."""
    if _active is None:
        return
    folder = Path(run_dir) / PID_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()


def note_configuration(run_dir: str | os.PathLike | None, phase: str, kind: str, config: Any,
                       paper_batch: int, used_batch: int, describe: Mapping[str, Any] | None = None,
                       **extra: Any) -> None:
    """In a rehearsal, write the configuration this run uses to ``<run_dir>/rehearsal.json``:
    ``optnb.experiments.paper_config.describe_<kind>(config, **describe)`` (``row``, ``search``,
    ``evaluation``: the names of the paper's settings), the paper's and the per-step batch, and
    ``extra``. Rank 0 only; a no-op outside a rehearsal."""
    if _active is None or run_dir is None:
        return
    # deferred: only a rehearsal writes this
    from optnb.atomic import write_text
    from optnb.train import distributed

    if not distributed.current().is_main:
        return
    described = _describe(kind, config, **(describe or {}))
    record = {"phase": phase, "configuration": described, "paper_batch": paper_batch,
              "step_batch": used_batch, "world_size": distributed.current().world_size,
              "overlay": _active.to_dict(), **extra}
    write_text(Path(run_dir) / CONFIG_FILE, json.dumps(record, indent=1, default=str) + "\n")
