"""Fixtures of the device checks: which device, which sizes, and where the numbers go.

``$OPTNB_CHECK_DEVICE`` names the device (default ``cuda``); a CUDA device that torch cannot see
skips every check with the reason. ``$OPTNB_CHECK_TINY=1``, or a CPU device, selects tiny sizes:

    pytest -m gpu tests/device                              # on the GPU, full sizes
    OPTNB_CHECK_DEVICE=cpu pytest -m gpu tests/device       # dry run on a CPU (tiny sizes)

``benchmarks/gpu_check.sh`` runs them with ``--junitxml -o junit_family=xunit1``: the environment
is recorded as test suite properties and each check's numbers as test properties (and printed,
so ``-rA`` shows them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

DEVICE_ENV = "OPTNB_CHECK_DEVICE"
TINY_ENV = "OPTNB_CHECK_TINY"


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test, from ``$OPTNB_CHECK_DEVICE`` (default ``cuda``)."""
    name = os.environ.get(DEVICE_ENV, "cuda")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        pytest.fail(f"${DEVICE_ENV}={name!r} is not a torch device ({exc})", pytrace=False)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            pytest.skip(f"${DEVICE_ENV}={name} but torch sees no CUDA device "
                        f"(set {DEVICE_ENV}=cpu for a dry run on the CPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            pytest.skip(f"${DEVICE_ENV}={name} but only {torch.cuda.device_count()} CUDA device(s)")
    return dev


@pytest.fixture(scope="session")
def tiny(device: torch.device) -> bool:
    """Tiny sizes: on a CPU (a dry run of the same code) or with ``$OPTNB_CHECK_TINY=1``."""
    return device.type == "cpu" or os.environ.get(TINY_ENV, "0") not in ("", "0")


@pytest.fixture(scope="session", autouse=True)
def _environment(record_testsuite_property: Callable[[str, object], None]) -> None:
    """torch/CUDA versions and the device's name, as properties of the JUnit test suite."""
    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "check_device": os.environ.get(DEVICE_ENV, "cuda"),
                           "check_tiny": os.environ.get(TINY_ENV, "0")}
    if torch.cuda.is_available():
        env.update(gpu=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   bf16=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    for key, value in env.items():
        record_testsuite_property(key, value)


@pytest.fixture
def report(request: pytest.FixtureRequest,
           record_property: Callable[[str, object], None]) -> Callable[..., None]:
    """``report(name=value, ...)``: each number goes to stdout (``-rA`` shows it) and, with
    ``-o junit_family=xunit1`` (as ``gpu_check.sh`` runs), to the JUnit XML as a test property
    (pytest's default family, xunit2, has no per-test properties)."""
    to_xml = request.config.getini("junit_family") != "xunit2"

    def _report(**values: Any) -> None:
        for key, value in values.items():
            if to_xml:
                record_property(key, value)
            print(f"{key} = {value}")

    return _report
