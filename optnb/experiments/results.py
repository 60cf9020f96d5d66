"""Recording named results from a notebook run into a JSON sidecar (and the notebook itself).

``record(name, value)`` does two things: it displays a ``application/vnd.optnb.result+json``
output (so the executed notebook carries its results even without the sidecar), and it updates
``<run_dir>/result.json`` atomically. The sidecar carries the provenance every table row needs:
parameters, profile, dataset (real or embedded), device, versions, git revision and timestamps.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from optnb.atomic import replacing
from optnb.info import package_versions
from optnb.paths import RUN_ID_MAX, repo_root, runs_dir

MIMETYPE = "application/vnd.optnb.result+json"
SIDECAR = "result.json"
_EXCLUDED_FROM_ID = ("LIVE", "RESULTS_DIR", "RUN_ID")

_current: dict[str, Any] = {}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_id_for(notebook: str, parameters: Mapping[str, Any]) -> str:
    """``<notebook stem>-<8 hex>``: a stable id from the sorted parameters (LIVE/RESULTS_DIR/RUN_ID
    excluded, so the same experiment maps to the same run folder however it is displayed).

    The stem is made a valid run id (``optnb.paths.RUN_ID_PATTERN``): characters other than
    letters, digits, ``_``, ``-`` and ``.`` become ``_`` (``my notebook`` -> ``my_notebook``)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(notebook).stem).lstrip("_.-")[: RUN_ID_MAX - 9] or "run"
    kept = {k: v for k, v in sorted(parameters.items()) if k not in _EXCLUDED_FROM_ID}
    digest = hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def to_jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays, tuples and paths to JSON values; NaN -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # also numpy.float64, a float subclass whose repr is not JSON-like
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays/scalars, torch tensors
        return to_jsonable(value.tolist())
    if hasattr(value, "item"):
        return to_jsonable(value.item())
    raise TypeError(f"cannot record a value of type {type(value).__name__}: use numbers, strings, lists or dicts")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (``optnb.atomic``)."""
    with replacing(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)


def read_sidecar(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of a run folder, or ``{}`` when there is none or it cannot be parsed."""
    path = Path(run_dir) / SIDECAR
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_sidecars(results_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every run under ``<results>/runs/``, keyed by run id (sorted): its sidecar ``result.json``,
    written the same way by a notebook, ``optnb train`` (also under torchrun), ``optnb search``
    and ``optnb evaluate``."""
    found: dict[str, dict[str, Any]] = {}
    for folder in sorted(p for p in runs_dir(results_dir).glob("*") if p.is_dir()):
        sidecar = read_sidecar(folder)
        if sidecar:
            found[sidecar.get("run_id") or folder.name] = sidecar
    return found


def device_label(sidecar: Mapping[str, Any]) -> str:
    """The device a sidecar names, with the GPU's name on CUDA (``cuda:0 (NVIDIA H200)``)."""
    device = str(sidecar.get("device", ""))
    gpu = (sidecar.get("versions") or {}).get("gpu")
    return f"{device} ({gpu})" if gpu and device.startswith("cuda") else device


def is_complete(run_dir: str | os.PathLike) -> bool:
    return read_sidecar(run_dir).get("status") == "complete"


@lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        return {"sha": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


#: the packages whose versions can change a run's numbers, recorded in every sidecar's "versions" and
#: compared with requirements.lock in the report (``optnb.experiments.lockfile``)
RECORDED_PACKAGES = (
    "torch", "torchvision", "numpy", "scipy", "scikit-learn", "sympy", "pandas", "papermill",
    "nbclient", "nbformat", "ipykernel", "ipywidgets",
)


def environment() -> dict[str, Any]:
    """Python, CUDA and the versions of ``RECORDED_PACKAGES`` (torch and torchvision as imported)
    plus the GPU name when there is one."""
    import torch
    import torchvision

    info = {
        **package_versions(RECORDED_PACKAGES),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def start_run(cfg: Any) -> Path:
    """Create the sidecar of ``cfg``'s run (status ``running``) and make it the current run."""
    from optnb.train import rehearsal_overlay  # deferred: the package imports this module

    device = str(cfg.device)
    sidecar = {
        "notebook": cfg.notebook,
        "run_id": cfg.run_id,
        "status": "running",
        "parameters": to_jsonable(dict(cfg.parameters)),
        "profile": cfg.profile,
        "dataset": cfg.dataset,
        "dataset_real": cfg.dataset_real,
        "smoke": cfg.profile == "smoke",
        "rehearsal": rehearsal_overlay.active() is not None,  # a dress rehearsal: never a result
        "device": device,
        "versions": environment(),
        "git": git_info(),
        "started": now(),
        "finished": None,
        "notes": list(cfg.notes),
        "results": {},
    }
    path = Path(cfg.run_dir) / SIDECAR
    atomic_write_json(path, sidecar)
    _current.clear()
    _current.update(path=path, run_dir=Path(cfg.run_dir))
    return path


def _display(payload: dict[str, Any]) -> None:
    text_repr = f"{payload['name']} = {payload['value']!r}" + (f" {payload['unit']}" if payload.get("unit") else "")
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(text_repr)
        return
    if get_ipython() is None:
        print(text_repr)
        return
    display({MIMETYPE: payload, "text/plain": text_repr}, raw=True, metadata={MIMETYPE: {"optnb": True}})


def record(name: str, value: Any, unit: str | None = None) -> None:
    """Record a named result of the current run (see module docstring)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"result name must be a non-empty string, got {name!r}")
    payload = {"name": name, "value": to_jsonable(value), "unit": unit}
    path = _current.get("path")
    if path is not None:
        sidecar = read_sidecar(path.parent) or {"results": {}}
        sidecar.setdefault("results", {})[name] = {"value": payload["value"], "unit": unit}
        sidecar["updated"] = now()
        atomic_write_json(path, sidecar)
    _display(payload)


def error_line(err: BaseException) -> str:
    """``Type: message`` on one line (what a failed command writes into its sidecar)."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _update(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    path = Path(run_dir) / SIDECAR
    sidecar = read_sidecar(run_dir)
    sidecar.update(to_jsonable(fields))
    atomic_write_json(path, sidecar)
    return sidecar


def mark_complete(run_dir: str | os.PathLike, output_path: str | os.PathLike | None = None,
                  duration_s: float | None = None) -> dict[str, Any]:
    """Called by the runner after a successful execution: the run counts as done from now on."""
    return _update(run_dir, status="complete", finished=now(), output=output_path, duration_s=duration_s)


def mark_failed(run_dir: str | os.PathLike, error: str, output_path: str | os.PathLike | None = None) -> dict[str, Any]:
    return _update(run_dir, status="failed", finished=now(), error=error, output=output_path)


def read_notebook_results(path: str | os.PathLike) -> dict[str, Any]:
    """Results recorded in an executed notebook, plus its papermill metadata (parameters, duration).

    Survives a lost sidecar: it scans the outputs for the optnb result mimetype.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(MIMETYPE)
            if isinstance(payload, str):
                payload = json.loads(payload)
            if payload:
                found[payload["name"]] = {"value": payload.get("value"), "unit": payload.get("unit")}
    meta = nb.metadata.get("papermill", {})
    return {"results": found, "parameters": dict(meta.get("parameters", {})), "duration_s": meta.get("duration")}
