"""The cost model of ``optnb reproduce --dry-run``: counted FLOPs instead of hand-set constants.

    seconds of a run = FLOPs of one training step x steps / (utilisation x the GPU's peak)

Where each number comes from:

* **FLOPs of one training step** are counted, not estimated: ``torch.utils.flop_counter``'s
  ``FlopCounterMode`` over the real forward, loss and backward of the paper-size model at the
  run's batch and resolution, on the ``meta`` device (shapes only: no memory, no arithmetic). A
  search step runs the real ``Architect.hypergradient`` too (first order: one pass on a
  validation batch for the architecture gradient; second order: the virtual step, the unrolled
  validation pass and the two finite-difference passes of the mixed Hessian-vector product).
  FlopCounterMode counts convolutions and matrix products (2 FLOPs per multiply-add), and the
  backward on ``meta`` tensors exactly as on real ones (tests/test_costs.py checks a batch-2
  CPU count x 32 against the batch-64 ``meta`` count). It counts no element-wise work (BatchNorm,
  ReLU, additions, pooling) and no optimiser update: SGD/Adam are O(parameters) element-wise
  operations per step, under 0.1 % of a step's convolution FLOPs at these batch sizes.
  torch 2.14's formula for ``convolution_backward`` ignores ``groups`` in the weight gradient
  (a depthwise convolution's is counted C times over; fixed upstream in pytorch/pytorch#183405),
  which would inflate every separable convolution of the NAS networks: :func:`_conv_backward_flop`
  replaces it with the per-group count.
* **Steps** = epochs x (train images // batch): the training loaders drop the last partial batch.
  Epochs, batch and resolution come from the recipes and profile sizes the runs use
  (``optnb.train.experiment.plan_row``, ``optnb.nas.params``); train images from
  :data:`TRAIN_IMAGES`. A search's epoch is ``min(train half, val half) // batch`` steps (25k/25k
  at paper size). Periodic test/validation passes are not counted (forward only: a few % of a
  CIFAR epoch), nor an early stop (DARTS+ rows are estimated at their full epochs).
* **Peak**: dense (no sparsity) bf16 tensor-core FLOP/s from the vendor datasheets
  (:data:`PEAK_BF16_TFLOPS`).
* **Utilisation** (:data:`UTILISATION`): assumed per kind of run, never measured yet (no GPU run
  is in benchmarks/RESULTS.md). ``optnb bench --suite rows`` (``optnb.experiments.utilisation``)
  measures it: every kind of step of the paper plan at the paper's configuration, timed on the
  device, its counted FLOPs over seconds x this peak; replace these with its per-kind medians
  (``rows-latest.json``, ``kinds``) from a GPU run, saying which GPU and when.

Searched cells do not exist before their search has run: the evaluation and transfer of a
searched row are costed with DARTS's published cells (:data:`STAND_IN_CELL`: DARTS_V1 for
``darts_1st``, DARTS_V2 for every other row), said in :func:`basis`; a cell with more
parameter-free operations costs less.

Counting is exact but not instant: a supernet pass dispatches ~5,000 operators, a few seconds on
``meta`` on a shared 2-core CPU, and the paper plan needs about twenty such passes. The counts are
therefore also stored in ``step_flops.json`` beside this module (written by
``python -m optnb.experiments.refresh_costs``, which counts every step the quick and paper plans need),
valid while :func:`fingerprint` (torch's version and the sources that define the networks, their
steps and this counting) is unchanged; a stale or missing entry is counted live, cached per
process (``functools.cache``), and the dry run says how many were.

The module imports no torch until a FLOP count or ``--gpu current`` needs it, so the command-line
parser and the smoke plans stay light.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optnb.devices import PEAK_BF16_TFLOPS
from optnb.experiments import beyond, beyond_nas
from optnb.experiments.targets import SEARCH_ROWS, TRANSFER_ROWS, Target

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optnb.nas.search import SearchConfig

__all__ = [
    "DEFAULT_GPU", "GPUS", "KINDS", "PEAK_BF16_TFLOPS", "STAND_IN_CELL", "TRAIN_IMAGES",
    "UTILISATION", "CostError", "Gpu", "RunCost", "basis", "estimate", "eval_step_flops",
    "kind_of", "model_step_flops", "resolve_gpu", "row_cost", "row_step_flops", "row_steps",
    "search_step_flops", "steps_of", "supernet_step_flops", "train_step_flops",
]


class CostError(ValueError):
    """A GPU or row the cost model does not know (one line naming the valid choices)."""


#: dense bf16 peaks by device-name substring: ``optnb.devices.PEAK_BF16_TFLOPS`` (one table)
#: the GPUs ``--gpu`` names (``current``: the CUDA device of this machine)
GPUS = ("H200", "H100", "A100")
#: the device this project's GPU sessions are lent
DEFAULT_GPU = "H200"

#: training images: CIFAR-10/100 50,000 (Krizhevsky 2009); ImageNet-1k (ILSVRC-2012) 1,281,167
TRAIN_IMAGES: Mapping[str, int] = {"cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}

#: kinds of run: a Table 1 (CIFAR) or Table 2 (ImageNet) row, a search, a CIFAR evaluation of a
#: cell, the ImageNet transfer of a cell
KINDS = ("cifar", "imagenet", "search", "evaluate", "transfer")
#: the share of the peak a run of each kind is assumed to reach, and why (none measured yet:
#: ``optnb bench --suite rows`` on a GPU measures them)
UTILISATION: Mapping[str, tuple[float, str]] = {
    "cifar": (0.02, "assumed: small CIFAR nets at batch 64 are launch-bound (hundreds of small "
                    "kernels per step); docs/performance.md's epoch targets imply 1-3 %"),
    "imagenet": (0.10, "assumed: eager bf16 ResNet/DenseNet at 224 px, batch 256; the host's JPEG "
                       "decoding may bound it lower (not modelled)"),
    "search": (0.001, "assumed: launch-bound: a first-order step dispatches ~20,000 operators "
                      "(counted on meta) at ~10 us each, ~0.2 s for ~190 GFLOP"),
    "evaluate": (0.005, "assumed: 20 cells of small separable convolutions, C = 36, batch 96: "
                        "launch- and memory-bound"),
    "transfer": (0.02, "assumed: 14 cells of separable convolutions, C = 48, 224 px, batch 128; "
                       "the host's JPEG decoding may bound it lower (not modelled)"),
}
#: the published cell that stands in for a searched one before the search has run
STAND_IN_CELL: Mapping[str, str] = {"darts_1st": "DARTS_V1"}
_DEFAULT_CELL = "DARTS_V2"


@dataclass(frozen=True)
class Gpu:
    """A device of the cost model: its name and dense bf16 peak (TFLOP/s)."""

    name: str
    peak_tflops: float


def resolve_gpu(name: str | None = None) -> Gpu:
    """``H200`` | ``H100`` | ``A100`` (any case) or ``current`` (this machine's CUDA device,
    looked up in :data:`PEAK_BF16_TFLOPS`); None is :data:`DEFAULT_GPU`."""
    key = (name or DEFAULT_GPU).strip()
    valid = ", ".join((*GPUS, "current"))
    if key.lower() == "current":
        import torch

        if not torch.cuda.is_available():
            raise CostError(f"--gpu current needs a CUDA device and none is visible; name one of "
                            f"{', '.join(GPUS)}")
        device = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
        if peak is None:
            raise CostError(f"no bf16 peak known for the current device {device!r}; known: "
                            f"{', '.join(PEAK_BF16_TFLOPS)}; name one of {', '.join(GPUS)}")
        return Gpu(device, peak)
    found = next((g for g in GPUS if g.lower() == key.lower()), None)
    if found is None:
        raise CostError(f"unknown --gpu {name!r}; valid: {valid}")
    return Gpu(found, PEAK_BF16_TFLOPS[found])


def estimate(flops_per_step: float, steps: int, gpu: Gpu | str | None, utilisation: float) -> float:
    """Seconds = FLOPs per step x steps / (utilisation x peak FLOP/s)."""
    if not 0.0 < utilisation <= 1.0:
        raise CostError(f"utilisation must be in (0, 1], got {utilisation}")
    device = gpu if isinstance(gpu, Gpu) else resolve_gpu(gpu)
    return flops_per_step * steps / (utilisation * device.peak_tflops * 1e12)


def steps_of(epochs: int, train_images: int, batch: int) -> int:
    """Optimizer steps of a run: ``epochs x (train_images // batch)`` (last partial batch dropped)."""
    return epochs * (train_images // batch)


# ----------------------------------------------------------------------------------------------
# FLOPs of one training step


def _conv_backward_flop(grad_out_shape: Sequence[int], x_shape: Sequence[int],
                        w_shape: Sequence[int], _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, _groups: int,
                        output_mask: Sequence[bool], out_shape: Sequence[Any], **kwargs: Any) -> int:
    """``convolution_backward``: the input gradient and the weight gradient each cost what the
    forward costs; the weight shape carries ``C_in / groups``, so both are per group."""
    from torch.utils.flop_counter import conv_flop_count

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


def _counter() -> Any:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})


def _batch(batch: int, side: int, device: Any, dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    return (torch.zeros(batch, 3, side, side, device=device, dtype=dtype),
            torch.zeros(batch, dtype=torch.long, device=device))


def model_step_flops(model: nn.Module, batch: int, side: int, aux_weight: float = 0.0,
                     forward_kwargs: Mapping[str, Any] | None = None) -> int:
    """FLOPs of forward + cross-entropy (plus ``aux_weight`` x the auxiliary head's) + backward of
    ``model`` in training mode on ``batch`` images ``side`` x ``side``, on the model's device
    (``meta``: nothing is computed). What ``ClassifierStep`` does, without the optimiser."""
    import torch.nn.functional as F

    param = next(model.parameters())
    x, y = _batch(batch, side, param.device, param.dtype)
    model.train()
    with _counter() as counter:
        out = model(x, **(forward_kwargs or {}))
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float(), y)
        if aux is not None and aux_weight:
            loss = loss + aux_weight * F.cross_entropy(aux.float(), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


#: the stored counts (see the module docstring) and the sources their fingerprint covers
STORED = Path(__file__).with_name("step_flops.json")
_SOURCES = ("optnb/models/*.py", "optnb/nas/spaces.py", "optnb/nas/operations.py",
            "optnb/nas/grouped.py", "optnb/nas/partial.py", "optnb/nas/edges.py",
            "optnb/nas/network.py", "optnb/nas/genotypes.py", "optnb/nas/architect.py",
            "optnb/nas/search.py")
#: keys counted live in this process because the stored table lacked them (the dry run says so)
LIVE: set[str] = set()


@cache
def fingerprint() -> str:
    """sha256 of torch's version, the sources that define the networks and steps
    (:data:`_SOURCES`) and this module's counting functions (not its docs or tables)."""
    import inspect

    import torch

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(torch.__version__.encode())
    for pattern in _SOURCES:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    for function in (_conv_backward_flop, _counter, _batch, model_step_flops, supernet_step_flops,
                     train_step_flops.__wrapped__, search_step_flops.__wrapped__,
                     eval_step_flops.__wrapped__):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:16]


@cache
def _stored() -> Mapping[str, int]:
    """The stored counts when their fingerprint matches the sources, else nothing."""
    try:
        table = json.loads(STORED.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(table, dict) or table.get("fingerprint") != fingerprint():
        return {}
    return {str(k): int(v) for k, v in dict(table.get("flops", {})).items()}


_refreshing = False  # True while refresh() counts everything live
_counted: dict[str, int] = {}


def _flops(key: str, count: Callable[[], int]) -> int:
    stored = None if _refreshing else _stored().get(key)
    if stored is not None:
        return stored
    LIVE.add(key)
    _counted[key] = count()
    return _counted[key]


@cache
def train_step_flops(model: str, options: tuple[tuple[str, Any], ...] = (), side: int = 32,
                     batch: int = 64) -> int:
    """One training step of registry model ``model`` (build ``options`` as sorted pairs) on
    ``batch`` images ``side`` x ``side``."""

    def count() -> int:
        import torch

        # deferred: heavy (torch, the networks, the plans) and only needed here
        from optnb.models import build

        with torch.device("meta"):
            net = build(model, **dict(options))
        return model_step_flops(net, batch, side)

    return _flops(f"train:{model}:{json.dumps(options)}:{side}:{batch}", count)


def supernet_step_flops(cfg: SearchConfig, device: str = "meta") -> int:
    """One search iteration of ``cfg`` (paper §9.3, ``BilevelStep.update``): the architecture
    gradient of ``cfg.order`` (``Architect.hypergradient``, the real code) + the weight step
    (forward/backward with the architecture detached) on its supernet. Train and validation
    batches are both ``cfg.batch_size`` images of 32 x 32; ``device`` ``cpu`` computes for real
    (same count, for tiny configurations)."""
    import torch

    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.nas.architect import Architect
    from optnb.nas.search import arch_optimizer, build_model

    cfg = cfg.checked()
    with torch.device(device):
        net = build_model(cfg)
    weights = torch.optim.SGD(net.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    architect = Architect(net, arch_optimizer(net, cfg), weights, cfg.order, cfg.hvp,
                          fd_radius=cfg.fd_radius)
    x, y = _batch(cfg.batch_size, 32, device)
    net.train()
    with _counter() as counter:
        architect.hypergradient(x, y, x, y)
    arch = int(counter.get_total_flops())
    return arch + model_step_flops(net, cfg.batch_size, 32, forward_kwargs={"detach_arch": True})


@cache
def search_step_flops(space: str, order: int = 1, partial_channels: int = 1, C: int = 16,
                      layers: int = 8, batch: int = 64) -> int:
    """:func:`supernet_step_flops` of a search of ``space`` at the paper's other settings."""

    def count() -> int:
        # deferred: heavy (torch, the networks, the plans) and only needed here
        from optnb.nas.search import SearchConfig

        return supernet_step_flops(SearchConfig(space=space, order=order, C=C, layers=layers,
                                                partial_channels=partial_channels, batch_size=batch))

    return _flops(f"search:{space}:{order}:{partial_channels}:{C}:{layers}:{batch}", count)


@cache
def eval_step_flops(genotype: str, network: str = "cifar", C: int = 36, layers: int = 20,
                    batch: int = 96, side: int = 32, auxiliary: bool = True,
                    aux_weight: float = 0.4) -> int:
    """One training step of the evaluation network of ``genotype`` (a name such as ``DARTS_V2``,
    JSON or Genotype text): CIFAR (20 cells, C = 36, Table 4) or ImageNet mobile (Table 5)."""

    def count() -> int:
        import torch

        # deferred: heavy (torch, the networks, the plans) and only needed here
        from optnb.nas import genotypes
        from optnb.nas.network import NetworkCIFAR, NetworkImageNet

        cls, classes = (NetworkCIFAR, 10) if network == "cifar" else (NetworkImageNet, 1000)
        with torch.device("meta"):
            net = cls(genotypes.parse(genotype), C=C, num_classes=classes, layers=layers,
                      auxiliary=auxiliary)
        return model_step_flops(net, batch, side, aux_weight=aux_weight if auxiliary else 0.0)

    key = f"eval:{genotype}:{network}:{C}:{layers}:{batch}:{side}:{auxiliary}:{aux_weight}"
    return _flops(key, count)


# ----------------------------------------------------------------------------------------------
# Rows of the tables


@dataclass(frozen=True)
class RunCost:
    """What a run costs and why: FLOPs per step x steps at ``utilisation`` of ``gpu``'s peak."""

    kind: str
    flops_per_step: int
    steps: int
    utilisation: float
    gpu: Gpu

    @property
    def seconds(self) -> float:
        return estimate(self.flops_per_step, self.steps, self.gpu, self.utilisation)

    @property
    def gpu_hours(self) -> float:
        return self.seconds / 3600.0


def kind_of(target: Target) -> str:
    """The kind of run (:data:`KINDS`) that fills ``target``."""
    if target.role in ("search", "evaluate", "transfer"):
        return target.role
    if target.table in ("table1", beyond.TABLE.name):
        return "cifar"
    if target.table == "table2":
        return "imagenet"
    raise CostError(f"no cost model for {target.table}/{target.row} ({target.role}); valid: "
                    "table1, table2, beyond rows, searches, evaluations, transfers")


def _search_setting(target: Target) -> tuple[str, int, int]:
    """``(space, order, partial channels)`` of a search row (Table 4 or ``beyond_nas``)."""
    row, options = target.row, {}
    if target.table == beyond_nas.TABLE.name:
        found = beyond_nas.variant(target.row)
        row, options = found.search, dict(found.options)
    if row not in SEARCH_ROWS:
        raise CostError(f"no search row {row!r}; valid: {', '.join(SEARCH_ROWS)}")
    space, _init, order = SEARCH_ROWS[row]
    return space, order, int(options.get("PARTIAL_CHANNELS", 1))


def _cell(target: Target) -> str:
    """The cell an evaluation/transfer is costed with: the named one, or a stand-in."""
    row = beyond_nas.variant(target.row).search if target.table == beyond_nas.TABLE.name else target.row
    if target.role == "transfer":
        source, name = TRANSFER_ROWS.get(row, ("search", row))
        if source == "named":
            return name
    return STAND_IN_CELL.get(row, _DEFAULT_CELL)


def _plan(target: Target, profile: str) -> tuple[Callable[[], int], int, int, int]:
    """``(FLOPs per step, when called; epochs, batch, train images)`` of ``target``'s run under
    ``profile``; the FLOPs are counted only when asked for."""
    kind = kind_of(target)
    if kind in ("cifar", "imagenet"):
        # deferred: heavy (torch, the networks, the plans) and only needed here
        from optnb.train.experiment import plan_row

        model, options = target.row, {}
        if target.table == beyond.TABLE.name:
            found = beyond.variant(target.row)
            model, options = found.model, dict(found.options)
        column = target.column or ("imagenet" if kind == "imagenet" else "cifar10+")
        dataset = "imagenet" if kind == "imagenet" else column.rstrip("+")
        row = plan_row(model, dataset, column.endswith("+") or kind == "imagenet", profile,
                       model_options=options)
        # dropout (DenseNet without augmentation) is element-wise: it changes no counted FLOP
        build_opts = tuple(sorted((k, v) for k, v in row.model_options.items() if k != "dropout"))
        return (lambda: train_step_flops(row.trained_model, build_opts, row.resolution,
                                         row.batch_size),
                row.epochs, row.batch_size, TRAIN_IMAGES[dataset])
    from optnb.nas import params

    if kind == "search":
        sizes = params.SEARCH_SIZES[profile]
        space, order, k = _search_setting(target)
        images = sizes["max_images"] or TRAIN_IMAGES["cifar10"]
        half = int(images * params.SearchConfig().train_portion)  # the train half = the val half
        return (lambda: search_step_flops(space, order, k, sizes["C"], sizes["layers"],
                                          sizes["batch_size"]),
                sizes["epochs"], sizes["batch_size"], half)
    if kind == "evaluate":
        cfg = replace(params.EvalConfig(), **params.EVAL_SIZES[profile])
        side, dataset = 32, "cifar10"
    else:
        cfg = replace(params.IMAGENET_RECIPE, **params.TRANSFER_SIZES[profile])
        side, dataset = params.TRANSFER_IMAGE_SIZE[profile], "imagenet"
    images = min(cfg.max_images, TRAIN_IMAGES[dataset]) if cfg.max_images else TRAIN_IMAGES[dataset]
    return (lambda: eval_step_flops(_cell(target), cfg.network, cfg.C, cfg.layers, cfg.batch_size,
                                    side, cfg.auxiliary, cfg.aux_weight),
            cfg.epochs, cfg.batch_size, images)


def _check_profile(profile: str) -> None:
    if profile not in ("quick", "paper"):
        raise CostError(f"the cost model covers the GPU profiles; got {profile!r}; valid: quick, paper")


def row_step_flops(table: str, row: str, role: str = "train", profile: str = "paper",
                   column: str | None = None) -> int:
    """FLOPs of one training step of the run that fills ``table``/``row`` in ``role`` (keyed like
    :class:`Target`), at ``profile``'s sizes (paper: the paper's configuration)."""
    _check_profile(profile)
    return _plan(Target(table, row, column, role), profile)[0]()


def row_steps(table: str, row: str, role: str = "train", profile: str = "paper",
              column: str | None = None) -> int:
    """Optimizer steps of that run (:func:`steps_of` with its epochs, images and batch)."""
    _check_profile(profile)
    _flops, epochs, batch, images = _plan(Target(table, row, column, role), profile)
    return steps_of(epochs, images, batch)


def row_cost(target: Target, profile: str = "paper", gpu: Gpu | str | None = None,
             utilisation: float | None = None) -> RunCost:
    """The :class:`RunCost` of the run that fills ``target`` (utilisation: :data:`UTILISATION`)."""
    _check_profile(profile)
    kind = kind_of(target)
    flops, epochs, batch, images = _plan(target, profile)
    flops_per_step = flops()
    device = gpu if isinstance(gpu, Gpu) else resolve_gpu(gpu)
    share = UTILISATION[kind][0] if utilisation is None else utilisation
    return RunCost(kind, flops_per_step, steps_of(epochs, images, batch), share, device)


def basis(gpu: Gpu | str | None = None) -> str:
    """The line that says how the GPU-hours were made."""
    device = gpu if isinstance(gpu, Gpu) else resolve_gpu(gpu)
    shares = ", ".join(f"{k} {100 * v[0]:g} %" for k, v in UTILISATION.items())
    return (f"one {device.name} at {device.peak_tflops:g} TFLOP/s dense bf16 peak x assumed "
            f"utilisation ({shares}; none measured on a GPU yet: optnb bench --suite rows); "
            "FLOPs per step from "
            "torch.utils.flop_counter (conv + matmul, forward + backward, meta device); steps from "
            "the recipes and the real datasets' sizes; searched cells costed as DARTS_V1/V2 until searched; "
            "ImageNet runs may be loader-bound (not modelled)")


def refresh(targets: Iterable[tuple[Target, str]], path: str | Path = STORED) -> dict[str, int]:
    """Count, live, the step of every ``(target, profile)`` (``optnb.experiments.refresh_costs``
    passes every run of the quick and paper plans) and store the counts with the current
    :func:`fingerprint` in ``path``; returns the counts."""
    global _refreshing

    for function in (train_step_flops, search_step_flops, eval_step_flops, _stored):
        function.cache_clear()
    _counted.clear()
    _refreshing = True
    try:
        for target, profile in targets:
            _plan(target, profile)[0]()
    finally:
        _refreshing = False
        _stored.cache_clear()
    import torch  # deferred: only a refresh needs torch's version

    table = {"fingerprint": fingerprint(), "torch": torch.__version__,
             "written_by": "python -m optnb.experiments.refresh_costs",
             "flops": dict(sorted(_counted.items()))}
    Path(path).write_text(json.dumps(table, indent=1) + "\n")
    return dict(_counted)
