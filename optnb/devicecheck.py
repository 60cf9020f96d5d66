"""A small harness for the device check scripts (``benchmarks/gpu_check.py``, ``optnb.nas.gpu_check``).

Each check is a named function returning a dict of details (``ok`` optional); a failing check is
recorded with its exception and the script goes on, so one run on a borrowed GPU reports
everything at once.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from typing import Any


class CheckLog:
    """Runs checks and keeps one result dict per check in ``results`` (in order)."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        t0 = time.perf_counter()
        try:
            detail = fn() or {}
            ok, error = bool(detail.pop("ok", True)), None
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the script
            ok, detail, error = False, {}, f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        entry = {"check": name, "ok": ok, "seconds": round(time.perf_counter() - t0, 2), **detail}
        if error:
            entry["error"] = error
        self.results.append(entry)
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {json.dumps(detail, default=str)}"
              + (f" {error}" if error else ""), flush=True)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results)
