"""optnb.live: throttling, the three modes, the final figure, and the Output-widget guard."""

from __future__ import annotations

import io

import pytest

from optnb import live


def test_mode_validation():
    assert live.mode("display") == "display"
    with pytest.raises(ValueError, match="choose one of: widget, display, off"):
        live.mode("tty")


def test_off_mode_draws_nothing_until_close(tmp_path):
    plot = live.LivePlot(mode="off", save_to=tmp_path / "curves.png")
    for step in range(5):
        assert plot.update(step, loss=1.0 / (step + 1), acc=step / 5) is False
    assert plot._figure.frames == 0
    fig = plot.close()
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert len(fig.axes) == 2 and plot.history["loss"][-1] == (4.0, 0.2)


def test_updates_are_throttled(monkeypatch):
    clock = iter([0.0, 0.1, 0.2, 1.0, 1.1])
    monkeypatch.setattr(live.time, "monotonic", lambda: next(clock))
    fig = live.LiveFigure(lambda f, s: f.add_subplot(1, 1, 1).plot(s), mode="display", min_interval=0.5)
    drawn = [fig.update([1, 2, 3]) for _ in range(5)]
    # t=0 draws (first), 0.1/0.2 are too soon, 1.0 draws, 1.1 too soon
    assert drawn == [True, False, False, True, False] and fig.frames == 2


def test_widget_mode_replaces_output_without_with_block():
    pytest.importorskip("ipywidgets")
    fig = live.LiveFigure(lambda f, s: f.add_subplot(1, 1, 1).plot(s), mode="widget", min_interval=0)
    fig.update([1, 2])
    fig.update([2, 1])
    outputs = fig.widget.outputs
    assert len(outputs) == 1 and "image/png" in outputs[0]["data"]


def test_progress_reports_in_text():
    buf = io.StringIO()
    items = list(live.progress(range(4), desc="train", mode="off", file=buf))
    assert items == [0, 1, 2, 3]
    assert buf.getvalue().strip().endswith("train: 4/4 (" + buf.getvalue().split("(")[-1].split(")")[0] + ") done")


class SwallowingOutput:
    """Behaves like ipywidgets.Output inside a kernel: __exit__ shows and suppresses errors."""

    def __init__(self):
        self.shown = []

    def __enter__(self):
        return self

    def __exit__(self, etype, value, tb):
        if etype is not None:
            self.shown.append(value)
            return True
        return False


def test_capture_reraises_what_output_swallows():
    out = SwallowingOutput()
    with out:  # the trap (ipywidgets#3208): the exception is swallowed
        raise RuntimeError("lost")
    with pytest.raises(RuntimeError, match="kept"), live.capture(out):
        raise RuntimeError("kept")
    assert [str(e) for e in out.shown] == ["lost", "kept"]
