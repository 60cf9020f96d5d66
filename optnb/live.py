"""Live plots and progress that degrade gracefully: ``widget`` | ``display`` | ``off``.

* ``widget``: JupyterLab. An ``ipywidgets.Output`` whose ``outputs`` are replaced with a PNG; the
  training code never runs inside ``with out:`` (ipywidgets#3208 swallows exceptions there).
* ``display``: papermill. ``display(..., display_id=True)`` once, then ``handle.update``: the
  executed notebook keeps the final frame.
* ``off``: scripts and nbval. Nothing is drawn while running; ``close`` saves the final figure
  and shows it once.

Updates are throttled (at most one redraw per ``min_interval`` seconds) so that browsers,
papermill's IOPub limits and output notebooks stay small.
"""

from __future__ import annotations

import base64
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.figure import Figure

MODES = ("widget", "display", "off")
T = TypeVar("T")


def mode(cfg_or_name: Any = "off") -> str:
    """The live mode of a resolved ``Config`` (its ``.live``) or a mode name."""
    name = getattr(cfg_or_name, "live", cfg_or_name)
    if name not in MODES:
        raise ValueError(f"live mode {name!r} is not valid; choose one of: {', '.join(MODES)}")
    return name


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _png_bundle(png: bytes) -> dict[str, Any]:
    return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": "<live figure>"}


class LiveFigure:
    """A figure redrawn by ``draw(fig, state)``, throttled, in one of the three modes."""

    def __init__(
        self,
        draw: Callable[[Figure, Any], None],
        mode: str = "off",
        min_interval: float = 0.5,
        save_to: str | Path | None = None,
        figsize: tuple[float, float] = (8.0, 3.2),
        dpi: int = 80,
    ) -> None:
        self.draw = draw
        self.mode = globals()["mode"](mode)
        self.min_interval = float(min_interval)
        self.save_to = Path(save_to) if save_to else None
        self.dpi = dpi
        self.fig = Figure(figsize=figsize)  # not registered with pyplot: never auto-shown
        self.frames = 0
        self._last = float("-inf")
        self._handle = None
        self._output = None
        self._state: Any = None
        if self.mode == "widget":
            import ipywidgets
            from IPython.display import display

            self._output = ipywidgets.Output()
            display(self._output)

    @property
    def widget(self) -> Any:
        """The ``ipywidgets.Output`` in widget mode (``None`` otherwise)."""
        return self._output

    def _render(self, state: Any) -> None:
        self.fig.clear()
        self.draw(self.fig, state)
        self.frames += 1

    def _push(self) -> None:
        png = _png(self.fig, self.dpi)
        if self.mode == "widget" and self._output is not None:
            self._output.outputs = ({"output_type": "display_data", "data": _png_bundle(png), "metadata": {}},)
        elif self.mode == "display" and _in_ipython():
            from IPython.display import display

            if self._handle is None:
                self._handle = display(_png_bundle(png), raw=True, display_id=True)
            else:
                self._handle.update(_png_bundle(png), raw=True)

    def update(self, state: Any, force: bool = False) -> bool:
        """Remember ``state`` and redraw if ``min_interval`` has passed; returns whether it drew."""
        self._state = state
        if self.mode == "off":
            return False
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return False
        self._last = now
        self._render(state)
        self._push()
        return True

    def close(self, state: Any = None) -> Figure:
        """Draw the final frame, save it (``save_to``), show it once; returns the figure."""
        if state is not None:
            self._state = state
        self._render(self._state)
        if self.save_to is not None:
            self.save_to.parent.mkdir(parents=True, exist_ok=True)
            self.fig.savefig(self.save_to, dpi=110, bbox_inches="tight")
        if self.mode in ("widget", "display"):
            self._push()
        elif _in_ipython():
            from IPython.display import display

            display(_png_bundle(_png(self.fig, self.dpi)), raw=True)
        return self.fig


def draw_curves(fig: Figure, history: dict[str, list[tuple[float, float]]]) -> None:
    """One panel per metric group: losses on the left, everything else on the right."""
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if "loss" not in k}
    panels = [p for p in (losses, others) if p]
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key, points in panel.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=key, marker="." if len(xs) < 30 else None)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


class LivePlot:
    """Curves of named metrics against a step: ``update(step, loss=..., acc=...)``."""

    def __init__(self, mode: str = "off", save_to: str | Path | None = None, min_interval: float = 0.5,
                 title: str = "") -> None:
        self.history: dict[str, list[tuple[float, float]]] = {}
        self.title = title
        self._figure = LiveFigure(self._draw, mode=mode, min_interval=min_interval, save_to=save_to)

    def _draw(self, fig: Figure, history: Any) -> None:
        draw_curves(fig, self.history)
        if self.title:
            fig.suptitle(self.title, fontsize=10)

    @property
    def fig(self) -> Figure:
        return self._figure.fig

    def update(self, step: float, force: bool = False, **metrics: float) -> bool:
        for key, value in metrics.items():
            if value is not None:
                self.history.setdefault(key, []).append((float(step), float(value)))
        return self._figure.update(self.history, force=force)

    def close(self) -> Figure:
        return self._figure.close(self.history)


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", mode: str = "off",
             min_interval: float = 1.0, file: Any = None) -> Iterator[T]:
    """Iterate with a throttled progress report: a widget bar, or plain text lines.

    Use this rather than ``tqdm.auto``, which does not advance in papermill logs and misbehaves
    without ipywidgets.
    """
    live_mode = globals()["mode"](mode)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    out = file or sys.stdout
    bar = None
    if live_mode == "widget":
        import ipywidgets
        from IPython.display import display

        bar = ipywidgets.IntProgress(value=0, min=0, max=max(total or 1, 1), description=desc)
        display(bar)
    start = last = time.monotonic()
    count = 0

    def line() -> str:
        rate = count / max(time.monotonic() - start, 1e-9)
        of = f"/{total}" if total else ""
        return f"{desc + ': ' if desc else ''}{count}{of} ({rate:.2f} it/s)"

    for item in iterable:
        yield item
        count += 1
        now = time.monotonic()
        if bar is not None:
            if now - last >= 0.2 or count == total:
                bar.value = count
                last = now
        elif now - last >= min_interval:
            print(line(), file=out, flush=True)
            last = now
    if bar is not None:
        bar.value = count
        bar.bar_style = "success"
    else:
        print(line() + " done", file=out, flush=True)


@contextmanager
def capture(out: Any) -> Iterator[Any]:
    """``with capture(output_widget):`` shows output in the widget and RE-RAISES exceptions.

    ``ipywidgets.Output.__exit__`` displays a traceback and suppresses the exception
    (ipywidgets#3208), so a crash inside ``with out:`` would let a headless run pass. This guard
    records the exception inside the context and raises it again after the widget has shown it.
    """
    caught: list[BaseException] = []
    with out:
        try:
            yield out
        except BaseException as err:  # noqa: BLE001 - re-raised below
            caught.append(err)
            raise
    if caught:
        raise caught[0]
