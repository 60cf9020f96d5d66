"""BatchNorm whose output channels are scaled per chunk: where AGDNet's coefficients live.

AGDNet's layer input is the weighted sum ``y_0 + sum_j c_{k,j} F_j(y_j)`` of eq. (12) (cumulative
form). On DenseNet's skeleton the sum is a concatenation ``[y_0, g_0, ..., g_{k-1}]`` that every
consumer normalises first, and training-mode BatchNorm cancels any positive scalar placed before
it (appendix note, Section 5.4). So the coefficients scale the chunks *after* normalisation:

    out[:, chunk j] = c_j * BN(x)[:, chunk j] = (c_j gamma) * x_hat + (c_j beta_bn).

The product is folded into BatchNorm's affine parameters, so the scaling costs ``C`` multiplies
per forward instead of a pass over the feature map, and with all ``c_j = 1`` the module computes
exactly what ``nn.BatchNorm2d`` computes (bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ScaledBatchNorm2d", "chunk_scale"]


def chunk_scale(chunks: Sequence[int], coefficients: Sequence[float]) -> Tensor:
    """The per-channel multiplier of a concatenation: 1 on chunk 0, ``coefficients[j - 1]`` on
    chunk ``j >= 1`` (``sum(chunks)`` values, float32)."""
    scale = [1.0] * chunks[0]
    for size, c in zip(chunks[1:], coefficients):
        scale += [float(c)] * size
    return torch.tensor(scale)


class ScaledBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over ``sum(chunks)`` channels whose chunk ``j >= 1`` is multiplied by
    ``coefficients[j - 1]`` after normalisation; chunk 0 (the block input ``y_0``) keeps 1.

    Fixed coefficients live in a non-persistent buffer, so the ``state_dict`` equals that of a
    plain BatchNorm and weights load across; ``learnable=True`` makes them a parameter
    (``coefficients``, ``len(chunks) - 1`` scalars).
    """

    def __init__(
        self,
        chunks: Sequence[int],
        coefficients: Sequence[float],
        learnable: bool = False,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ) -> None:
        chunks = tuple(int(c) for c in chunks)
        if len(coefficients) != len(chunks) - 1 or min(chunks) < 1:
            raise ValueError(
                f"need one coefficient per chunk after the first: chunks={chunks}, "
                f"got {len(coefficients)} coefficients"
            )
        super().__init__(sum(chunks), eps=eps, momentum=momentum)
        self.chunks = chunks
        coeffs = torch.tensor([float(c) for c in coefficients], dtype=torch.float32)
        if learnable:
            self.coefficients = nn.Parameter(coeffs)
            self.register_buffer("_repeats", torch.tensor(chunks[1:]), persistent=False)
            self.register_buffer("_ones", torch.ones(chunks[0]), persistent=False)
        else:
            self.register_buffer("coefficients", coeffs, persistent=False)
            self.register_buffer("scale", chunk_scale(chunks, coefficients), persistent=False)

    @property
    def learnable(self) -> bool:
        return isinstance(self.coefficients, nn.Parameter)

    def channel_scale(self) -> Tensor:
        """The per-channel multiplier (``C`` values)."""
        if not self.learnable:
            return self.scale
        tail = self.coefficients.repeat_interleave(self._repeats, output_size=sum(self.chunks[1:]))
        return torch.cat([self._ones.to(tail.dtype), tail])

    def extra_repr(self) -> str:
        shown = ", ".join(f"{c:.4g}" for c in self.coefficients.detach().cpu().tolist()[:6])
        more = ", ..." if len(self.coefficients) > 6 else ""
        return f"{super().extra_repr()}, chunks={len(self.chunks)}, coefficients=[{shown}{more}]"

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        scale = self.channel_scale()
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight * scale,
            self.bias * scale,
            use_batch_stats,
            factor,
            self.eps,
        )
