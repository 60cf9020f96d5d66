"""Shared pytest fixtures. Every test module imports this file: keep it small and cheap."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
FIXTURE_NOTEBOOKS = NOTEBOOKS / "_fixtures"


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C back on: a shell without job control starts background commands with SIGINT
    ignored (``cmd &`` in a script), and the interrupt tests (runner, reproduce) send SIGINT to
    this process and to the commands it starts, which inherit an ignored signal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def tmp_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty results folder under ``tmp_path``, exported as ``$OPTNB_RESULTS``."""
    path = tmp_path / "results"
    path.mkdir()
    monkeypatch.setenv("OPTNB_RESULTS", str(path))
    return path


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI settings for code that resolves parameters: smoke profile, no widgets."""
    monkeypatch.setenv("OPTNB_PROFILE", "smoke")
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
