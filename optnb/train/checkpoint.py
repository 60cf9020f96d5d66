"""The one checkpoint format of optnb: atomic writes, weights-only reads, one compatibility check.

Every training in the suite (a Table 1/2 row, a NAS search, a NAS evaluation, the small nets of
notebook 04) goes through ``optnb.train.engine.fit``, which writes ``<run_dir>/checkpoint.pt``
after each good epoch. A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
so ``torch.load(weights_only=True)`` reads it back without executing any code:

``format``    ``FORMAT``, refused when different
``identity``  what the run is (``kind`` first: train, search, evaluate, ...; then its settings),
              compared with the resuming run by :func:`check_identity`
``epoch``, ``step``, ``train_time_s``, ``wall_s``, ``history``
``model``, ``optimizer``, ``data`` (the training loader's order), ``rng`` (:func:`rng_state`)
``state``     the other objects a task needs back (an architecture optimiser, a validation
              loader, a drop-path generator), each as its ``state_dict()``
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

FORMAT = "optnb.checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not one of ours; the message says what to do."""


class CheckpointExistsError(CheckpointError):
    """Starting afresh would overwrite a checkpoint; resume it or use another run folder."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint belongs to a different run (model, dataset, settings) than the one requested."""


class Stateful(Protocol):
    """Anything a checkpoint can hold: optimisers, loaders, :class:`GeneratorState`."""

    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class GeneratorState:
    """A ``torch.Generator`` as a :class:`Stateful` (e.g. the drop-path mask generator)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["state"].cpu())


def save_atomic(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start without --resume or point to an existing file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a weights-only optnb checkpoint "
            f"({type(err).__name__}: {first}); delete it to start over or restore it from a backup"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_identity(state: Mapping[str, Any], identity: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint of another format or another run.

    Every key of ``identity`` must be stored with an equal value (tuples and lists compare
    equal, as JSON-like values); a missing key counts as a difference.
    """
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint (format {state.get('format')!r}); "
                              "use another run folder")
    stored = state.get("identity") or {}
    diff = [f"{k}: checkpoint {_short(stored.get(k))} vs requested {_short(v)}"
            for k, v in identity.items() if _plain(stored.get(k)) != _plain(v)]
    if diff:
        raise CheckpointMismatchError(f"checkpoint {path} is for another run ({'; '.join(diff)}); "
                                      "use another run folder or the matching settings")


def _plain(value: Any) -> Any:
    """JSON-like normal form: tuples become lists, recursively."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and every CUDA device) RNG states, weights-only loadable."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
