"""What one training step is: the protocol ``fit`` drives, and the classifier step most tasks use.

A task differs from another by its step (one update from one batch) and its schedule; the loop is
``optnb.train.engine.fit``. The NAS search's ``BilevelStep`` and the NAS evaluation's
``DropPathStep`` (``optnb.nas``) are steps too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from optnb.train import compiling


@dataclass
class StepOutput:
    """What one step reports: the minimised loss and the logits (both detached), and any other
    per-step scalars to average over the epoch (e.g. the search's validation loss)."""

    loss: torch.Tensor
    logits: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Step(Protocol):
    """One update from one batch. ``start_epoch``/``end_epoch`` return what the epoch record
    should say about the step's own state (a drop-path probability, the architecture weights).
    ``compile`` compiles what the step runs per batch (``optnb.train.compiling``)."""

    def start_epoch(self, epoch: int) -> dict[str, Any]: ...
    def compile(self, spec: bool | str) -> None: ...
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput: ...
    def end_epoch(self) -> dict[str, Any]: ...


@dataclass
class ClassifierStep:
    """Forward, cross-entropy (plus ``aux_weight`` x the auxiliary head's, when the network returns
    ``(logits, aux)``), backward, optional gradient-norm clipping, one optimiser update."""

    net: nn.Module  # what the forward runs through: the model, or its DDP/compiled wrapper
    optimizer: torch.optim.Optimizer
    amp: bool = False  # bf16 autocast
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    aux_weight: float = 0.0
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.device_type = next(self.net.parameters()).device.type
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # None until compiled; the step keeps no bound method of itself otherwise, so the network
        # and optimiser state are freed as soon as the step is dropped, not at the next collection
        self._compiled_forward_loss: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
        self._cuda_graphs = False

    def compile(self, spec: bool | str) -> None:
        """Compile :meth:`forward_loss` (forward and loss in one graph, its backward derived from
        it; ``optnb.train.compiling``); the optimiser update stays eager."""
        on = compiling.compile_kwargs(spec) is not None
        self._compiled_forward_loss = compiling.compile_function(self.forward_loss, spec) if on else None
        self._cuda_graphs = compiling.uses_cuda_graphs(spec, torch.device(self.device_type))

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        return {}

    def end_epoch(self) -> dict[str, Any]:
        return {}

    def inputs(self, x: torch.Tensor) -> dict[str, Any]:
        """Per-step keyword inputs of the forward besides ``x`` (drop-path masks, for instance):
        drawn here, outside any compiled graph."""
        return {}

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The minimised loss and the logits of one batch (what a compiled step compiles)."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(x, **self.forward_kwargs, **inputs)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(_at_least_fp32(logits), y, label_smoothing=self.label_smoothing)
        if aux is not None and self.aux_weight:
            loss = loss + self.aux_weight * F.cross_entropy(_at_least_fp32(aux), y,
                                                            label_smoothing=self.label_smoothing)
        return loss, logits

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        forward_loss = self._compiled_forward_loss or self.forward_loss
        loss, logits = forward_loss(x, y, **self.inputs(x))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return StepOutput(loss.detach(), logits.detach())


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) in fp32 for the loss; fp32 and float64 ones as they are (a
    float64 network's loss and gradients stay float64, which the numerical checks rely on)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


#: ``make_step(net, optimizer, amp) -> Step``: how a task turns the prepared network into its step
StepFactory = Callable[[nn.Module, torch.optim.Optimizer, bool], Step]


def classifier_step(net: nn.Module, optimizer: torch.optim.Optimizer, amp: bool) -> ClassifierStep:
    """The default :data:`StepFactory`: a plain :class:`ClassifierStep`."""
    return ClassifierStep(net, optimizer, amp=amp)
