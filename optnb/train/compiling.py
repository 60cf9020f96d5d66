"""``torch.compile`` for the training steps: what may be asked for, and the one place it is applied.

A step compiles its *forward + loss* function (``ClassifierStep.forward_loss``): Dynamo captures
the model and the loss in one graph, AOTAutograd derives the backward graph from it, and Inductor
generates fused kernels for both; the optimiser update stays outside (the fused/foreach SGD
kernels are already one pass over the weights). Everything that changes between epochs reaches
the graph as a tensor or not at all -- the learning rate lives in the optimiser, the drop-path
masks are inputs drawn outside the graph (``optnb.nas.network``) -- so a fit compiles once per
graph and never again between epochs (tests count it with :class:`CompileCounter`).

``compile`` (``FitOptions.compile``, ``--compile``) is ``False``, ``True`` (Inductor, default mode),
a mode of ``torch.compile`` (``reduce-overhead``: CUDA graphs on a GPU) or a backend used by the
tests to check tracing without generating code (``aot_eager``: the forward and backward graphs,
``eager``: the forward graph only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BACKENDS = ("inductor", "aot_eager", "eager")
CHOICES = (*MODES, *BACKENDS)
TASKS = ("train", "search", "evaluate")
#: overrides the profile's default for every task: on, off, a mode or a backend
ENV = "OPTNB_COMPILE"
#: what compiles by default in the ``quick`` and ``paper`` profiles (never in ``smoke``, where the
#: compile would take longer than the run): the training of the model families for which
#: ``optnb bench --suite compile`` shows the compiled step beating the eager channels_last step
#: (benchmarks/RESULTS.md, 2026-12-03, CPU: ResNet-56 1.32x vs 1.21x, HBNet-56 1.34x vs 1.25x;
#: DenseNet-40, AGDNet-40 and the DARTS_V2 evaluation network were faster eager with
#: channels_last). Not the search: Dynamo takes minutes to trace even a small supernet.
#: ``--compile on`` / ``OPTNB_COMPILE`` ask for it anywhere.
COMPILED_PROFILES = ("quick", "paper")
COMPILED_FAMILIES = {"train": ("resnet", "hbnet", "admmnet"), "search": (), "evaluate": ()}

F = TypeVar("F", bound=Callable[..., Any])


class CompileOptionError(ValueError):
    """An unknown ``compile`` value."""


def compile_kwargs(spec: bool | str) -> dict[str, Any] | None:
    """``torch.compile`` keyword arguments for ``spec``; ``None`` when nothing is compiled.

    Shapes are static (``dynamic=False``): a training step sees one batch shape (the loaders drop
    the last partial batch), and a static graph is what CUDA graphs need."""
    if spec is False or spec is None or spec == "off":
        return None
    if spec is True or spec == "on":
        return {"dynamic": False}
    if spec in MODES:
        return {"mode": spec, "dynamic": False}
    if spec in BACKENDS:
        return {"backend": spec, "dynamic": False}
    raise CompileOptionError(f"unknown compile option {spec!r}; valid: on, off, {', '.join(CHOICES)}")


def parse(text: str) -> bool | str:
    """``--compile`` / ``OPTNB_COMPILE`` text: on, off, a mode or a backend (checked)."""
    value: bool | str = {"on": True, "off": False, "true": True, "false": False, "1": True,
                         "0": False}.get(text.strip().lower(), text.strip())
    compile_kwargs(value)
    return value


def default_for(profile: str, task: str, family: str = "") -> bool | str:
    """Whether ``task`` (one of ``TASKS``) of a model ``family`` compiles in ``profile``:
    ``OPTNB_COMPILE`` when set, else :data:`COMPILED_FAMILIES` in :data:`COMPILED_PROFILES`."""
    if task not in TASKS:
        raise CompileOptionError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            return parse(env)
        except CompileOptionError as err:
            raise CompileOptionError(f"{ENV}: {err}") from None
    return profile in COMPILED_PROFILES and family in COMPILED_FAMILIES[task]


def compile_function(fn: F, spec: bool | str) -> F:
    """``fn`` compiled as ``spec`` says (see :func:`compile_kwargs`), or ``fn`` itself."""
    kwargs = compile_kwargs(spec)
    return fn if kwargs is None else torch.compile(fn, **kwargs)


def uses_cuda_graphs(spec: bool | str, device: torch.device) -> bool:
    """Whether compiled steps replay CUDA graphs (``reduce-overhead`` on a GPU): each step must
    then mark its start, so the previous step's graph outputs may be overwritten."""
    return device.type == "cuda" and spec == "reduce-overhead"


class CompileCounter:
    """Counts the graphs Dynamo compiles (and the graph breaks) while the ``with`` block runs.

    ``graphs``: frames compiled, first compilations and recompilations alike; a fit that compiles
    once has a fixed count however many epochs it runs."""

    def __enter__(self) -> CompileCounter:
        from torch._dynamo.utils import counters

        self._counters = counters
        self._start = self._snapshot()
        return self

    def _snapshot(self) -> tuple[int, int]:
        frames = self._counters["frames"]
        return int(frames["ok"]), sum(self._counters["graph_break"].values())

    def __exit__(self, *exc: object) -> None:
        end = self._snapshot()
        self.graphs, self.graph_breaks = end[0] - self._start[0], end[1] - self._start[1]
