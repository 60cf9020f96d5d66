"""What this installation is: versions, device, paths and the datasets found (``optnb info``).

Every number the suite reports says how it was made; this is the environment half of that
statement (the other half is each run's sidecar, ``optnb.experiments.results``).
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from optnb import paths
from optnb.specs import REAL_DATASETS

PACKAGES = (
    "optnb", "torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "ipykernel",
    "jupyterlab", "papermill", "nbclient", "nbval", "scikit-learn",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (``None`` when a package is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """CPU threads, CUDA availability and the visible GPUs."""
    import torch

    info: dict[str, Any] = {
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "gpus": [],
    }
    if info["cuda_available"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    info["default_device"] = "cuda" if info["cuda_available"] else "cpu"
    return info


def datasets_found() -> dict[str, bool | str]:
    """Which datasets load without a download (``optnb.data.available``)."""
    # deferred: optnb.data imports torch, which `optnb --help` never needs
    from optnb import data

    found: dict[str, bool | str] = {}
    for name in data.NAMES:
        try:
            found[name] = bool(data.available(name))
        except Exception as err:  # noqa: BLE001 - report, never crash `optnb info`
            found[name] = f"error: {err}"
    return found


def environment_info() -> dict[str, Any]:
    """Everything ``optnb info`` prints, as a JSON-able dict."""
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_info(),
        "paths": {
            "repo": str(paths.repo_root()),
            "notebooks": str(paths.notebooks_dir()),
            "data": str(paths.data_dir()),
            "results": str(paths.results_dir()),
        },
        "datasets": datasets_found(),
    }


def format_info(info: dict[str, Any] | None = None) -> str:
    """A short human-readable report of :func:`environment_info`."""
    info = info or environment_info()
    dev = info["device"]
    gpus = ", ".join(dev["gpus"]) or "none"
    lines = [
        f"python      {info['python']} ({info['executable']})",
        f"platform    {info['platform']}",
        f"device      default={dev['default_device']} cuda={dev['cuda_available']} "
        f"(CUDA build {dev['cuda_version']}) gpus={gpus} cpu_threads={dev['cpu_threads']}",
        "packages    " + " ".join(f"{k}={v or 'missing'}" for k, v in info["packages"].items()),
    ]
    lines += [f"{k + ' dir':<11} {v}" for k, v in info["paths"].items()]
    sets = info["datasets"]
    present = [k for k, v in sets.items() if v is True]
    missing = [k for k, v in sets.items() if v is not True]
    lines.append(f"datasets    found: {', '.join(present) or 'none'}; "
                 f"not found: {', '.join(missing) or 'none'}")
    if not any(sets.get(k) is True for k in REAL_DATASETS):
        lines.append("            no real dataset: runs use the EMBEDDED digits dataset, "
                     "which does not reproduce the paper's numbers")
    return "\n".join(lines)
