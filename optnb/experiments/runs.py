"""What the runner executes (``Run``) and what it reports back (``RunResult``).

A module of its own so that validation, the runner and the worker processes share these types
without importing each other. Both are plain frozen dataclasses: they travel to and from worker
processes by pickling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments.results import run_id_for


@dataclass(frozen=True)
class Run:
    """One notebook execution: ``notebook`` is a stem (``"06_train_cifar"``), ``"06"`` or a path.

    Without an explicit ``run_id`` the id is ``run_id_for(stem, parameters)``, the same id that
    ``resolve`` and the plans compute, so all of them agree on the run's folder.
    """

    notebook: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", dict(self.parameters))
        if not self.run_id:
            stem = str(self.notebook).removesuffix(".ipynb")
            object.__setattr__(self, "run_id", run_id_for(stem, self.parameters))


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run; ``error`` names the failing cell and exception when ``ok`` is False.

    ``busy`` (who holds the run folder) says the run was not started because another process
    owns it; ``run_many`` tries such a run again later, so its callers never see one."""

    run: Run
    ok: bool
    output_path: Path | None
    sidecar_path: Path | None
    error: str | None
    duration_s: float
    skipped: bool = False
    busy: str = ""

    def summary(self) -> str:
        """One line: ``ok``/``skipped``/``busy``/``FAILED``, the run id, the time and the exception."""
        status = ("skipped (complete)" if self.skipped else "ok" if self.ok
                  else f"busy ({self.busy})" if self.busy else "FAILED")
        line = f"{status:<18} {self.run.run_id} ({self.duration_s:.1f} s)"
        if self.error:
            line += " " + self.error.splitlines()[0]
        return line
