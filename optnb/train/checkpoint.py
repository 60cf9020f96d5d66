"""The one checkpoint format of optnb: atomic writes, weights-only reads, a content checksum, and
one check that a checkpoint is sound and belongs to the run that resumes it.

Every training in the suite (a Table 1/2 row, a NAS search, a NAS evaluation, the small nets of
notebook 04) goes through ``optnb.train.engine.fit``, which writes ``<run_dir>/checkpoint.pt``
after each good epoch. A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
so ``torch.load(weights_only=True)`` reads it back without executing any code:

``format``    ``FORMAT``, refused when different
``identity``  what the run is (``kind`` first: train, search, evaluate, ...; then its settings),
              compared with the resuming run by :func:`check_identity`
``epoch``, ``step``, ``train_time_s``, ``wall_s``, ``history`` (one record per epoch done)
``model``, ``optimizer``, ``data`` (the training loader's order), ``rng`` (:func:`rng_state`)
``state``     the other objects a task needs back (an architecture optimiser, a validation
              loader, a drop-path generator), each as its ``state_dict()``
``checksum``  ``"sha256:<hex>"`` of everything else (:func:`checksum`), written by
              :func:`save_atomic` and verified by :func:`load_checkpoint`

A zip archive's own CRCs are not checked by ``torch.load``, so bytes garbled inside a tensor load
silently; the checksum is what catches them. Every refusal is a :class:`CheckpointError` (a
``ValueError``: one line, exit code 2 from the ``optnb`` command) that names the file and what to
do; the file itself is never touched.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import struct
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from optnb.atomic import replacing

FORMAT = "optnb.checkpoint/2"
#: formats of older optnb versions, written without a checksum: named in the refusal
LEGACY_FORMATS = ("optnb.checkpoint/1",)
CHECKPOINT_NAME = "checkpoint.pt"
CHECKSUM_KEY = "checksum"

#: what to do with a checkpoint that cannot be used (the end of every refusal of a bad file)
REMEDY = ("it is left as it is: restore it from a backup, or delete it to start over "
          "(restart=True / --no-resume replaces it), or use another run folder")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not one of ours; the message says what to do."""


class CheckpointExistsError(CheckpointError):
    """Starting afresh would overwrite a checkpoint; resume it or use another run folder."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint belongs to a different run (model, dataset, settings) than the one requested."""


class CheckpointCorruptError(CheckpointError):
    """The checkpoint cannot be read, fails its checksum, or its content is incomplete or inconsistent."""


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


# --------------------------------------------------------------------------- checksum

def checksum(state: Mapping[Any, Any]) -> str:
    """``"sha256:<hex>"`` of ``state`` without its ``checksum`` key, over a canonical walk.

    Mappings by sorted key; lists and tuples as sequences; a tensor as its dtype, shape and the raw
    bytes of its contiguous CPU copy (viewed as ``uint8``, so bf16 and bool work); ``None``, bools,
    ints, floats (their IEEE bits), strings and bytes by a tagged, length-prefixed encoding. Raises
    ``TypeError`` naming the first value of another type (nothing ``weights_only`` could load).
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != CHECKSUM_KEY}, "checkpoint")
    return "sha256:" + digest.hexdigest()


def _scalar(value: Any) -> bytes | None:
    """The tagged encoding of a scalar (also used for mapping keys); ``None`` for other types."""
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"B1" if value else b"B0"
    if isinstance(value, int):
        text = str(int(value)).encode()
        return b"I" + struct.pack("<Q", len(text)) + text
    if isinstance(value, float):
        return b"F" + struct.pack("<d", value)
    if isinstance(value, str):
        text = value.encode("utf-8", "surrogatepass")
        return b"S" + struct.pack("<Q", len(text)) + text
    if isinstance(value, bytes):
        return b"Y" + struct.pack("<Q", len(value)) + value
    if isinstance(value, (torch.dtype, torch.device)):
        text = str(value).encode()
        return b"D" + struct.pack("<Q", len(text)) + text
    return None


def _feed(digest: Any, value: Any, where: str) -> None:
    encoded = _scalar(value)
    if encoded is not None:
        digest.update(encoded)
    elif isinstance(value, torch.Tensor):
        _feed_tensor(digest, value, where)
    elif isinstance(value, Mapping):
        keys = []
        for key in value:
            code = _scalar(key)
            if code is None:
                raise TypeError(f"{where}: a key of type {type(key).__name__} cannot be checksummed")
            keys.append((code, key))
        digest.update(b"M" + struct.pack("<Q", len(keys)))
        for code, key in sorted(keys, key=lambda item: item[0]):
            digest.update(code)
            _feed(digest, value[key], f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        digest.update(b"L" + struct.pack("<Q", len(value)))
        for i, item in enumerate(value):
            _feed(digest, item, f"{where}[{i}]")
    else:
        raise TypeError(f"{where} is a {type(value).__name__}: a checkpoint holds only tensors, numbers, "
                        "strings, lists and dicts")


def _feed_tensor(digest: Any, tensor: torch.Tensor, where: str) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise TypeError(f"{where}: a {tensor.layout} tensor cannot be checksummed")
    head = f"{tensor.dtype}{tuple(tensor.shape)}".encode()
    digest.update(b"T" + struct.pack("<QQ", len(head), tensor.numel() * tensor.element_size()) + head)
    flat = tensor.detach()
    if flat.is_conj() or flat.is_neg():
        flat = flat.resolve_conj().resolve_neg()
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if not flat.is_contiguous():
        flat = flat.contiguous()
    digest.update(flat.reshape(-1).view(torch.uint8).numpy())


# --------------------------------------------------------------------------- writing

def save_atomic(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` ``state`` plus its :func:`checksum` to a temporary file next to ``path``, fsync,
    then ``os.replace``. A crash mid-write leaves the previous checkpoint intact; content that cannot
    be checksummed raises ``TypeError`` before anything is written."""
    path = Path(path)
    content = {**state, CHECKSUM_KEY: checksum(state)}
    with replacing(path, "wb") as fh:
        torch.save(content, fh)
    return path


# --------------------------------------------------------------------------- reading

def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    identity: Mapping[str, Any] | None = None,
                    names: Collection[str] = ()) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and verify its checksum.

    With ``identity`` (what ``fit`` does before a resume) it must also be an :data:`FORMAT`
    checkpoint of that run (:func:`check_identity`) with every key of the format, of the right
    type and consistent (:func:`check_content`; ``names``: the entries ``state`` must hold).
    Raises :class:`CheckpointError` (or a subclass) in one line that names the file and what to do.
    """
    path = Path(path)
    state = _read(path, map_location)
    if identity is None:
        _verify(state, path)
        return state
    damage = _damage(state)
    if not isinstance(state.get("identity"), Mapping):
        _check_format(state, path)
        check_content(state, path, names, note=damage)
    check_identity(state, identity, path, note=damage)  # the format first, then the identity
    if damage:
        raise CheckpointCorruptError(f"checkpoint {path} {damage}; {REMEDY}")
    check_content(state, path, names)
    return state


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"no checkpoint at {path}; start without --resume or point to an existing file")
    if not path.is_file():
        what = "a dangling link" if not path.exists() else "a directory" if path.is_dir() else "not a regular file"
        raise CheckpointError(f"{path} is not a file ({what}), so it cannot be a checkpoint; move it away, "
                              "or use another run folder")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err}); check its permissions "
                              "and the disk, or use another run folder") from err
    if path.stat().st_size == 0:
        raise CheckpointCorruptError(f"checkpoint {path} is empty (0 bytes: an interrupted copy or a full "
                                     f"disk); {REMEDY}")
    if not zipfile.is_zipfile(path):
        raise CheckpointCorruptError(
            f"checkpoint {path} is corrupt or not a weights-only optnb checkpoint (not a complete zip archive, "
            f"as torch.save writes: truncated, or another kind of file); {REMEDY}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointCorruptError(
            f"checkpoint {path} is corrupt or not a weights-only optnb checkpoint ({_reason(err)}); "
            f"{REMEDY}") from err
    if not isinstance(state, dict):
        raise CheckpointCorruptError(f"checkpoint {path} holds a {type(state).__name__}, not an optnb "
                                     f"checkpoint (a dict); {REMEDY}")
    return state


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(err: BaseException) -> str:
    """Torch's error in a few words: its first sentence, without advice to load unsafely."""
    text = " ".join(_ANSI.sub("", str(err)).split())
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)  # c10's source location
    found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(Check the documentation .*)?$", text)
    if found:  # the weights-only loader's verdict, inside a paragraph of advice we must not repeat
        text = found.group(1)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s and "weights_only" not in s
                 and "safe_globals" not in s and "trust" not in s]
    text = sentences[0] if sentences else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _damage(state: Mapping[str, Any]) -> str:
    """Why the stored checksum does not vouch for ``state`` ("" when it does)."""
    if CHECKSUM_KEY not in state:
        return "has no checksum, so its content cannot be verified (it was not written by optnb's save_atomic)"
    stored = state.get(CHECKSUM_KEY)
    if not isinstance(stored, str) or not stored.startswith("sha256:"):
        return f"has a malformed checksum ({_short(stored)})"
    try:
        actual = checksum(state)
    except TypeError as err:
        return f"holds content that cannot be checksummed ({err})"
    if actual != stored:
        return (f"fails its checksum (stored {stored[:19]}..., content {actual[:19]}...): it was damaged "
                "or edited after it was written")
    return ""


def _verify(state: Mapping[str, Any], path: Path) -> None:
    damage = _damage(state)
    if damage:
        raise CheckpointCorruptError(f"checkpoint {path} {damage}; {REMEDY}")


def _check_format(state: Mapping[str, Any], path: Path) -> None:
    found = state.get("format")
    if found == FORMAT:
        return
    if "format" not in state:
        raise CheckpointError(f"checkpoint {path} is missing its 'format' key, so it is not an {FORMAT} "
                              f"checkpoint; {REMEDY}")
    if found in LEGACY_FORMATS:
        raise CheckpointError(f"checkpoint {path} was written by an older optnb ({found}, without a "
                              "checksum), so it cannot be verified; finish that run with the optnb that "
                              "wrote it, or delete it to start over, or use another run folder")
    raise CheckpointError(f"{path} is not an {FORMAT} checkpoint (format {_short(found)}); use another "
                          "run folder, or delete it to start over")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_identity(state: Mapping[str, Any], identity: Mapping[str, Any], path: Path, note: str = "") -> None:
    """Refuse a checkpoint of another format or another run.

    Every key of ``identity`` must be stored with an equal value (tuples and lists compare
    equal, as JSON-like values); a missing key counts as a difference. ``note`` (the checksum's
    verdict, if it failed) is added to the message.
    """
    _check_format(state, path)
    stored = state.get("identity")
    if not isinstance(stored, Mapping):
        raise CheckpointCorruptError(f"checkpoint {path} has no identity (a dict of the run's settings); {REMEDY}")
    diff = [f"{k}: checkpoint {_short(stored.get(k))} vs requested {_short(v)}"
            for k, v in identity.items() if _plain(stored.get(k)) != _plain(v)]
    if diff:
        also = f"; it also {note}" if note else ""
        raise CheckpointMismatchError(f"checkpoint {path} is for another run ({'; '.join(diff)}){also}; "
                                      "use another run folder or the matching settings")


def _plain(value: Any) -> Any:
    """JSON-like normal form: tuples become lists, recursively."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


_NUMBER = (int, float)
#: the keys of the format and the types their values must have
FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,), "identity": (Mapping,), "epoch": (int,), "step": (int,), "train_time_s": _NUMBER,
    "wall_s": _NUMBER, "history": (list,), "model": (Mapping,), "optimizer": (Mapping,), "data": (Mapping,),
    "rng": (Mapping,), "state": (Mapping,),
}


def content_problems(state: Mapping[str, Any], names: Collection[str] = ()) -> list[str]:
    """What is missing, of the wrong type or inconsistent in a checkpoint's content ([] if nothing)."""
    missing = [key for key in FIELDS if key not in state]
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    for key, types in FIELDS.items():
        value = state.get(key)
        if key in state and (not isinstance(value, types) or isinstance(value, bool)):
            problems.append(f"{key} is of type {type(value).__name__}, expected "
                            f"{' or '.join('dict' if t is Mapping else t.__name__ for t in types)}")
    if problems:
        return problems
    for key in ("epoch", "step", "train_time_s", "wall_s"):
        if not state[key] >= 0 or not math.isfinite(state[key]):
            problems.append(f"{key} is {state[key]!r}, expected a number >= 0")
    history = state["history"]
    if len(history) != state["epoch"]:
        problems.append(f"history has {len(history)} records for {state['epoch']} epochs")
    elif not all(isinstance(r, Mapping) for r in history):
        problems.append("history holds records that are not dicts")
    elif history and history[-1].get("step") != state["step"]:
        problems.append(f"history ends at step {history[-1].get('step')!r}, the checkpoint at step {state['step']}")
    planned = state["identity"].get("epochs_planned")
    if isinstance(planned, int) and state["epoch"] > planned:
        problems.append(f"epoch {state['epoch']} is past the {planned} planned")
    if not all(isinstance(k, str) for k in state["model"]):
        problems.append("model holds entries without a name")
    lacking = [k for k in ("state", "param_groups") if k not in state["optimizer"]]
    if lacking:
        problems.append(f"optimizer lacks {', '.join(lacking)}")
    lacking = [k for k in ("python", "numpy", "torch") if k not in state["rng"]]
    if lacking:
        problems.append(f"rng lacks {', '.join(lacking)}")
    lacking = [n for n in names if not isinstance(state["state"].get(n), Mapping)]
    if lacking:
        problems.append(f"state lacks {', '.join(lacking)}")
    return problems


def check_content(state: Mapping[str, Any], path: Path, names: Collection[str] = (), note: str = "") -> None:
    """Refuse a checkpoint whose content is incomplete, of the wrong types or inconsistent."""
    problems = content_problems(state, names) or ([note] if note else [])
    if problems:
        raise CheckpointCorruptError(f"checkpoint {path} is incomplete or inconsistent ({'; '.join(problems)}); "
                                     f"{REMEDY}")


def check_tensors(saved: Mapping[str, Any], expected: Mapping[str, torch.Tensor], path: Path,
                  what: str = "model") -> None:
    """Refuse saved tensors that do not fit ``expected`` (a ``state_dict()``): names, shapes, dtypes."""
    problems = [f"{k} missing" for k in expected if k not in saved]
    problems += [f"{k} unexpected" for k in saved if k not in expected]
    for k, want in expected.items():
        got = saved.get(k)
        if k not in saved or not isinstance(want, torch.Tensor):
            continue
        if not isinstance(got, torch.Tensor):
            problems.append(f"{k} is of type {type(got).__name__}, the {what} has a tensor")
        elif got.shape != want.shape or got.dtype != want.dtype:
            problems.append(f"{k} is {got.dtype} {list(got.shape)}, the {what} has {want.dtype} {list(want.shape)}")
    _refuse_misfit(problems, path, what)


def check_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Refuse (after ``optimizer.load_state_dict``) a per-parameter buffer of another shape than its
    parameter, which ``load_state_dict`` accepts and the first step would fail on."""
    problems = []
    for i, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                problems.append(f"parameter {i}'s {key} is {list(value.shape)}, the parameter {list(param.shape)}")
    _refuse_misfit(problems, path, "optimizer")


def _refuse_misfit(problems: list[str], path: Path, what: str) -> None:
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise CheckpointCorruptError(f"checkpoint {path} does not fit this run's {what} ({shown}); {REMEDY}")


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
