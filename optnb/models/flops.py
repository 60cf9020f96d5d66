"""Parameters and compute of the models, and the size table beside the paper's Tables 1-2.

Conventions (state them next to every number):

* **MACs** = multiply-accumulates of convolutions and linear layers, measured with
  ``torch.utils.flop_counter.FlopCounterMode`` (which counts ``2 x MAC`` per conv/matmul) divided
  by 2, for one image (batch 1) at the model's input size (32 for CIFAR, 224 for ImageNet).
  The paper's "FLOPs (G)" of Table 2 match this (ResNet-34: 3.66), so they are multiply-adds.
* FlopCounterMode does not see element-wise work (BatchNorm, ReLU, additions, pooling). HBNet's
  momentum and AGDNet's coefficients are element-wise, so their MACs equal the baselines'
  exactly. **Element-wise ops** are counted separately: one per output element of every
  ``add``/``sub``/``mul``/``lerp`` (BN, ReLU, pooling, concatenation not counted). The difference
  variant - baseline is the measured cost of the momentum (HBNet: about one multiply-add per
  element of each momentum block's output; AGDNet: ``C`` multiplies per consumer, because the
  coefficients are folded into BatchNorm's affine parameters).

Counting runs on the ``meta`` device: no memory, no arithmetic, a fraction of a second per model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from optnb.models.registry import baseline_of, build, spec

__all__ = [
    "CONVENTION",
    "TABLE1_MODELS",
    "TABLE2_MODELS",
    "ELEMENTWISE_OPS",
    "count_compute",
    "count_params",
    "measure",
    "params_match",
    "size_table",
]

CONVENTION = (
    "MACs = FlopCounterMode FLOPs / 2 (conv + linear multiply-accumulates, batch 1, 32x32 CIFAR / "
    "224x224 ImageNet); element-wise ops (add/sub/mul/lerp, 1 per output element; BN, ReLU, "
    "pooling not counted) reported separately"
)

#: the models of the paper's Table 1 (CIFAR, 10 classes) and Table 2 (ImageNet), in print order.
TABLE1_MODELS = ("resnet56", "hbnet56", "resnet110", "hbnet110",
                 "densenet40", "agdnet40", "densenet52", "agdnet52")
TABLE2_MODELS = ("resnet34", "hbnet34", "resnet50", "hbnet50",
                 "resnet101", "hbnet101", "densenet121", "agdnet121")

_aten = torch.ops.aten
ELEMENTWISE_OPS = (
    _aten.add, _aten.add_, _aten.sub, _aten.sub_, _aten.mul, _aten.mul_,
    _aten.lerp, _aten.lerp_, _aten.rsub,
)


def _per_output_element(*args: Any, out_shape: Sequence[int] | None = None, **kwargs: Any) -> int:
    return math.prod(out_shape) if out_shape is not None else 0


def count_params(model: nn.Module, trainable_only: bool = False, skip: Sequence[str] = ()) -> int:
    """Number of parameters: all of them, or only those with ``requires_grad``, leaving out those
    whose name contains one of ``skip`` (e.g. an auxiliary head, as DARTS counts)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if (p.requires_grad or not trainable_only) and not any(s in name for s in skip))


def count_compute(model: nn.Module, input_size: int | Sequence[int]) -> dict[str, int]:
    """``{"macs": ..., "elementwise": ...}`` of one forward pass of ``model`` in eval mode.

    ``input_size`` is the image side (batch 1, 3 channels) or a full input shape. The input is
    created on the model's device; put the model on ``meta`` to count without computing.
    """
    shape = (1, 3, input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    mapping = {op: _per_output_element for op in ELEMENTWISE_OPS}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(torch.zeros(shape, device=device))
    finally:
        model.train(was_training)
    per_op = counter.get_flop_counts().get("Global", {})
    elementwise = sum(n for op, n in per_op.items() if op in ELEMENTWISE_OPS)
    total = counter.get_total_flops()
    return {"macs": (total - elementwise) // 2, "elementwise": elementwise}


def measure(name: str, **options: Any) -> dict[str, Any]:
    """Parameters and compute of registry model ``name`` (built on ``meta``) at its input size."""
    entry = spec(name)
    with torch.device("meta"):
        model = build(entry.name, **options)
    counts = count_compute(model, entry.input_size)
    params = count_params(model)
    return {
        "name": entry.name,
        "kind": entry.kind,
        "baseline": baseline_of(entry.name),
        "options": dict(options),
        "input_size": entry.input_size,
        "params": params,
        "params_m": params / 1e6,
        "macs": counts["macs"],
        "macs_g": counts["macs"] / 1e9,
        "elementwise": counts["elementwise"],
        "elementwise_g": counts["elementwise"] / 1e9,
    }


def _printed_decimals(value: float, kind: str) -> int:
    """Decimals the paper prints: Table 2 always two (21.80); Table 1 as written (0.85, 1.7)."""
    if kind == "imagenet":
        return 2
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text else 0


def params_match(params: int, printed_m: float, kind: str = "cifar") -> bool:
    """Whether ``params`` rounds to the paper's printed value (in millions) at its precision."""
    decimals = _printed_decimals(printed_m, kind)
    return round(params / 1e6, decimals) == round(float(printed_m), decimals)


def size_table(
    names: Iterable[str],
    reference: Mapping[str, Mapping[str, Any]] | None = None,
    flops_tolerance: float = 0.02,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per model: measured parameters / MACs / element-wise ops beside the paper.

    ``reference`` maps a model name to the paper's values (``params_m``, ``flops_g``), e.g. the
    rows of ``optnb.experiments.paper.table("table1")``; ``options`` maps a name to build options.
    Added columns: ``paper_params_m``, ``params_match`` (at the printed precision),
    ``paper_flops_g``, ``flops_rel_diff`` ((MACs - paper) / paper), ``flops_match`` (within
    ``flops_tolerance``), ``vs_baseline_params`` and ``vs_baseline_macs`` (variant - baseline),
    and ``convention``. Missing paper values are None.
    """
    reference = reference or {}
    options = options or {}
    rows: list[dict[str, Any]] = []
    cache: dict[tuple, dict[str, Any]] = {}
    for name in names:
        row = measure(name, **options.get(name, {}))
        ref = reference.get(row["name"], {})
        paper_params, paper_flops = ref.get("params_m"), ref.get("flops_g")
        row["paper_params_m"] = paper_params
        row["params_match"] = (
            None if paper_params is None else params_match(row["params"], paper_params, row["kind"])
        )
        row["paper_flops_g"] = paper_flops
        if paper_flops is None:
            row["flops_rel_diff"] = row["flops_match"] = None
        else:
            rel = (row["macs_g"] - paper_flops) / paper_flops
            row["flops_rel_diff"] = rel
            row["flops_match"] = abs(rel) <= flops_tolerance
        base = row["baseline"]
        base_opts = {k: v for k, v in row["options"].items() if k in spec(base).options}
        key = (base, tuple(sorted(base_opts.items())))
        if key not in cache:
            cache[key] = row if base == row["name"] else measure(base, **base_opts)
        for col in ("params", "macs", "elementwise"):
            row[f"vs_baseline_{col}"] = row[col] - cache[key][col]
        row["convention"] = CONVENTION
        rows.append(row)
    return rows
