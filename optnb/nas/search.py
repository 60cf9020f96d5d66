"""The NAS search of paper §9.3: the bilevel step, run by the one training loop (``optnb.train.fit``).

Each iteration draws a train batch and a val batch (the 25k/25k split of the CIFAR-10 training
set; the profile shrinks it), takes an architecture step (``architect.py``), then a weight step
(SGD, momentum 0.9, wd 3e-4, grad-clip 5, cosine lr from 0.025 to 0). Architecture: Adam 3e-4,
betas (0.5, 0.999), wd 1e-3, for alphas and AGD edge logits alike. :class:`BilevelStep` is that
iteration; ``fit`` supplies the loop, the evaluation on the held-out half, the per-epoch atomic
checkpoint (weights, alphas and edge logits, both optimisers, both loaders' data order, all RNG
states: ``search(..., resume=True)`` continues exactly), the divergence guard and the JSONL log
``metrics.jsonl``, whose epoch records carry losses, accuracies, lr, timings, softmax(alpha), path
weights, the derived genotype and how many parameter-free ops it holds. Several seeds run as
separate processes (``optnb search --seeds 0 1 2 3 --jobs 4``).

PC-DARTS (Xu et al. 2020): ``partial_channels = K`` sends 1/K of every edge's channels through
its mixed op (``optnb.nas.partial``), ``edge_normalization`` adds its edge weights to darts and hb
(``edge``) or chooses where agd's path weights act (``path``, eq. (20), or ``edge``), and
``arch_warmup_epochs`` trains only the weights for that many epochs first. ``RECIPES["pc_darts"]``
is its CIFAR-10 search recipe.

Data parallel (``torchrun --nproc_per_node N -m optnb search``): ``batch_size`` stays the *global*
batch; each rank draws its ``batch_size / N`` slice of every training and validation batch. The
weight step runs through DDP (the architecture parameters are left out of it), the architecture
gradients are averaged over ranks (``architect.rank_mean``), and BatchNorm uses the statistics of
the global batch (:class:`CrossRankBatchNorm`), so N ranks take the steps one process takes.

DARTS-code fidelity quirks (fixed by default) come back with ``darts_compat=True``: first/last
split, arch batches drawn with replacement (``next(iter(valid_queue))``), the lr off by one epoch
(epoch e runs at lr(e+1)) and ``eta_min = 0.001``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from optnb.data import NUM_CLASSES, GpuLoader, make_loader
from optnb.nas.architect import HVP_MODES, ORDERS, Architect
from optnb.nas.collapse import EarlyStop
from optnb.nas.derive import check_cap, check_rule
from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype, count_parameter_free, to_dict
from optnb.nas.partial import check_edge_normalization, check_partial_channels
from optnb.nas.spaces import CELL_OUTPUTS, INITS, SearchNetwork, check_space
from optnb.train import Callback, ClassifierStep, FitOptions, StepOutput, distributed, fit, rehearsal_overlay

PRECISIONS = ("auto", "fp32", "bf16")
#: config keys that may change between a checkpoint and its resume
RESUME_FREE = ("val_every", "epochs_limit")
#: settings added after checkpoints existed: left out of ``identity()`` at these values (agd's
#: ``edge_normalization`` is ``path``), so earlier checkpoints still resume
LEGACY_DEFAULTS: dict[str, Any] = {"partial_channels": 1, "edge_normalization": "off",
                                   "arch_warmup_epochs": 0, "max_skip": None, "skip_hb_pair": False,
                                   "early_stop": "off", "stop_skips": 2, "stable_epochs": 10}
EARLY_STOPS = ("off", "darts+")


@dataclass(frozen=True)
class SearchConfig:
    """Search settings; defaults are the paper's (§9.3) and DARTS's."""

    space: str = "darts"
    init: str = "random"  # random (1e-3 randn) | zeros | hb (eq. 18; hb space only)
    order: int = 1
    epochs: int = 50
    C: int = 16
    layers: int = 8
    steps: int = 4
    batch_size: int = 64
    primitives: tuple[str, ...] | None = None  # None: DARTS's 8 for darts, the paper's 9 else
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    alpha_scale: float = 1e-3
    hb_init_logit: float = 5.0
    derive_rule: str = "auto"
    cell_output: str = "concat"  # concat (eq. 14) | last (hb ablation)
    hvp: str = "fd"
    fd_radius: float = 0.01
    track_running_stats: bool = True
    grouped: bool = True
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    darts_compat: bool = False
    train_portion: float = 0.5
    max_images: int = 0  # 0: the whole training set
    partial_channels: int = 1  # PC-DARTS K: 1/K of the channels through the mixed ops (1: all)
    edge_normalization: str = "auto"  # auto (agd: path, else off) | off | edge (PC-DARTS) | path
    arch_warmup_epochs: int = 0  # epochs of weight steps only before the architecture steps start
    max_skip: int | None = None  # P-DARTS: at most this many skips in the derived normal cell (the remedy: 2)
    skip_hb_pair: bool = False  # hb: eq. (18)'s identity pair per node is not counted as skips
    early_stop: str = "off"  # off | darts+ (stop at stop_skips skips, or a ranking stable stable_epochs)
    stop_skips: int = 2
    stable_epochs: int = 10  # 0: the skip criterion only
    val_every: int = 1  # full validation pass every k epochs (and after the last)
    epochs_limit: int = 0  # stop once this many epochs are done in total (0: run to the end)
    seed: int = 0

    def checked(self) -> SearchConfig:
        """Validate every choice; returns self (with ``derive_rule`` made explicit)."""
        check_space(self.space)
        if self.init not in INITS:
            raise unknown("init", self.init, INITS)
        if self.init == "hb" and self.space != "hb":
            raise NasError(f"init='hb' needs space='hb' (eq. 18), got space={self.space!r}")
        if self.order not in ORDERS:
            raise unknown("order", self.order, ORDERS)
        if self.hvp not in HVP_MODES:
            raise unknown("hvp mode", self.hvp, HVP_MODES)
        if self.precision not in PRECISIONS:
            raise unknown("precision", self.precision, PRECISIONS)
        if self.cell_output not in CELL_OUTPUTS:
            raise unknown("cell output", self.cell_output, CELL_OUTPUTS)
        for name in ("epochs", "C", "layers", "batch_size", "steps", "val_every"):
            if getattr(self, name) < 1:
                raise NasError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.train_portion < 1.0:
            raise NasError(f"train_portion must be in (0, 1), got {self.train_portion}")
        check_partial_channels(self.partial_channels, self.C)
        check_cap(self.space, self.max_skip, self.skip_hb_pair)
        if self.early_stop not in EARLY_STOPS:
            raise unknown("early stop rule", self.early_stop, EARLY_STOPS)
        if isinstance(self.stop_skips, bool) or not isinstance(self.stop_skips, int) or self.stop_skips < 1:
            raise NasError(f"stop_skips must be an integer >= 1, got {self.stop_skips!r}")
        if isinstance(self.stable_epochs, bool) or not isinstance(self.stable_epochs, int) or self.stable_epochs < 0:
            raise NasError(f"stable_epochs must be an integer >= 0 (0: off), got {self.stable_epochs!r}")
        if isinstance(self.arch_warmup_epochs, bool) or not isinstance(self.arch_warmup_epochs, int) \
                or not 0 <= self.arch_warmup_epochs < self.epochs:
            raise NasError(f"arch_warmup_epochs must be an integer in [0, epochs - 1] = "
                           f"[0, {self.epochs - 1}], got {self.arch_warmup_epochs!r}")
        return replace(self, derive_rule=check_rule(self.space, self.derive_rule),
                       edge_normalization=check_edge_normalization(self.space, self.edge_normalization))

    @property
    def eta_min(self) -> float:
        return 0.001 if self.darts_compat else self.lr_min

    def lr_at(self, epoch: int, epochs: int | None = None) -> float:
        """Closed-form cosine annealing over ``epochs`` (default: the config's), no restart;
        DARTS-compat runs epoch e at lr(e+1)."""
        epochs = epochs or self.epochs
        e = min(epoch + 1, epochs) if self.darts_compat else epoch
        return self.eta_min + 0.5 * (self.lr - self.eta_min) * (1 + math.cos(math.pi * e / epochs))

    @property
    def bf16(self) -> bool | None:
        """bf16 autocast: None = the engine's default (on CUDA), else as ``precision`` says."""
        return {"auto": None, "fp32": False, "bf16": True}[self.precision]

    def identity(self) -> dict[str, Any]:
        """What a search checkpoint must match to be resumed (every setting but ``RESUME_FREE``)."""
        legacy = {**LEGACY_DEFAULTS, "edge_normalization": "path" if self.space == "agd" else "off"}
        return {"kind": "search", **{k: v for k, v in asdict(self).items()
                                     if k not in RESUME_FREE and not (k in legacy and v == legacy[k])}}


#: named search recipes (the sizes of a profile still apply on top in notebook 08 / ``optnb search``)
RECIPES: dict[str, SearchConfig] = {
    # DARTS (quark0/darts train_search.py) and the paper (§9.3): the SearchConfig defaults
    "darts": SearchConfig(),
    # PC-DARTS (yuhuixu1993/PC-DARTS train_search.py): K = 4, edge normalisation, batch 256,
    # lr 0.1 cosine to 0.001, arch Adam 6e-4 (betas 0.5, 0.999), wd 1e-3, 50 epochs, the first 15
    # without architecture steps
    "pc_darts": SearchConfig(partial_channels=4, edge_normalization="edge", batch_size=256,
                             lr=0.1, lr_min=0.001, arch_lr=6e-4, arch_weight_decay=1e-3,
                             epochs=50, arch_warmup_epochs=15),
}


def recipe(name: str) -> SearchConfig:
    """A named search recipe (``RECIPES``); unknown names raise with the valid ones."""
    if name not in RECIPES:
        raise unknown("search recipe", name, tuple(RECIPES))
    return RECIPES[name]


@dataclass
class SearchResult:
    genotype: Genotype
    history: list[dict[str, Any]]
    model: SearchNetwork
    wall_s: float
    device: str
    run_dir: Path | None
    resumed_from: int = 0
    config: SearchConfig = field(default_factory=SearchConfig)

    @property
    def complete(self) -> bool:
        """All epochs done, or stopped early by a rule (``stopped_early`` says why)."""
        return bool(self.history) and (self.history[-1]["epoch"] >= self.config.epochs
                                       or bool(self.history[-1].get("stopped_early")))

    @property
    def search_cost_days(self) -> float:
        """Measured wall time of the whole search (all resumes) in device-days."""
        return self.wall_s / 86400.0


def autocast_factory(device: torch.device, precision: str) -> Callable[[], Any]:
    """bf16 autocast for convs/matmuls (CUDA by default); BN, softmax and losses stay fp32."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def split_indices(n_total: int, cfg: SearchConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The search split: a seeded random permutation (paper), or first/last (``darts_compat``)."""
    n = min(cfg.max_images, n_total) if cfg.max_images else n_total
    if cfg.darts_compat:
        order = torch.arange(n)
    else:
        order = torch.randperm(n_total, generator=torch.Generator().manual_seed(cfg.seed))[:n]
    n_train = int(n * cfg.train_portion)
    train, val = order[:n_train], order[n_train:]
    if min(len(train), len(val)) < cfg.batch_size:
        raise NasError(f"the search split ({len(train)} train / {len(val)} val images) is smaller "
                       f"than one batch of {cfg.batch_size}; use more images or a smaller batch")
    return train, val


def rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global ``batch_size``; it must divide evenly."""
    if batch_size % world_size:
        raise NasError(f"batch_size {batch_size} (the global batch) does not split over {world_size} "
                       f"processes; use a multiple of {world_size}")
    return batch_size // world_size


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the ranks' gradients (every rank's loss depends on
    every rank's contribution)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad.contiguous())


def cross_rank_batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
                          running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
                          bias: torch.Tensor | None = None, training: bool = False,
                          momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """``F.batch_norm`` whose batch statistics are those of all ranks' shards together.

    Two all-reduces with autograd (sum, then the centred sum of squares), whose backward sums the
    ranks' gradients, so the gradient DDP averages is the one of the global batch (as
    ``nn.SyncBatchNorm``, which covers modules only, not the grouped path's ``F.batch_norm``)."""
    if not training:
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    dims = [0, *range(2, xf.ndim)]
    shape = [1, -1] + [1] * (xf.ndim - 2)
    count = xf.new_tensor([xf.numel() // xf.shape[1]])
    total = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]))
    n = total[-1].detach()
    mean = total[:-1] / n
    centred = xf - mean.view(shape)
    var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
    out = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype), alpha=momentum)
            unbiased = var.detach() * n / (n - 1).clamp_min(1)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    return out.to(x.dtype)


class CrossRankBatchNorm(TorchFunctionMode):
    """While active, every ``F.batch_norm`` (the BatchNorm modules' and ``grouped_batch_norm``'s)
    is :func:`cross_rank_batch_norm`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.batch_norm:
            return cross_rank_batch_norm(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


def build_model(cfg: SearchConfig, num_classes: int = 10) -> SearchNetwork:
    """The supernet of ``cfg``, weights and architecture initialised from ``cfg.seed`` alone
    (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = SearchNetwork(cfg.space, cfg.C, num_classes, cfg.layers, cfg.primitives,
                              cfg.steps, cfg.cell_output,
                              track_running_stats=cfg.track_running_stats, grouped=cfg.grouped,
                              partial_channels=cfg.partial_channels,
                              edge_normalization=cfg.edge_normalization)
    model.init_arch(cfg.init, cfg.alpha_scale, cfg.hb_init_logit,
                    torch.Generator().manual_seed(cfg.seed))
    return model


def arch_record(model: SearchNetwork, rule: str, max_skip: int | None = None,
                hb_pair: bool = False) -> dict[str, Any]:
    """The architecture part of a log line: weights, derived genotype, collapse diagnostics.
    ``genotype``/``param_free`` are uncapped (the diagnostic); with a skip cap the capped cell is
    added as ``genotype_capped``/``param_free_capped``."""
    state = model.arch_state()
    genotype = model.genotype(rule)
    out: dict[str, Any] = {"genotype": to_dict(genotype),
                           "param_free": count_parameter_free(genotype)}
    if max_skip is not None:
        capped = model.genotype(rule, max_skip, hb_pair)
        out.update(genotype_capped=to_dict(capped), param_free_capped=count_parameter_free(capped))
    prims = model.primitives
    for kind in ("normal", "reduce"):
        w = state[f"alpha_{kind}"].double()
        out[f"alpha_{kind}"] = w.tolist()
        out[f"alpha_entropy_{kind}"] = float(-(w * w.clamp_min(1e-30).log()).sum(1).mean())
        if "skip_connect" in prims and "neg_skip_connect" in prims:
            net = w[:, prims.index("skip_connect")] - w[:, prims.index("neg_skip_connect")]
            out[f"net_skip_{kind}"] = net.tolist()  # w_id - w_neg: the signed identity weight
        if f"path_{kind}" in state:
            out[f"path_{kind}"] = state[f"path_{kind}"].double().tolist()
    return out


class BilevelStep:
    """One search iteration: an architecture step on a validation batch, then a weight step on
    the training batch with the architecture held fixed (``detach_arch``).

    For the first ``arch_warmup_epochs`` epochs (0-based epoch < warm-up; PC-DARTS: 15) only the
    weight step runs: no validation batch is drawn and the epoch record has no
    ``search_val_loss``; it says ``arch_steps: False``."""

    def __init__(self, model: SearchNetwork, architect: Architect, weights: ClassifierStep,
                 val: GpuLoader | None, derive_rule: str, darts_compat: bool = False,
                 arch_warmup_epochs: int = 0, max_skip: int | None = None, hb_pair: bool = False) -> None:
        self.model, self.architect, self.weights = model, architect, weights
        self.val, self.derive_rule, self.darts_compat = val, derive_rule, darts_compat
        self.arch_warmup_epochs = arch_warmup_epochs
        self.max_skip, self.hb_pair = max_skip, hb_pair
        self.arch_steps = True
        self._val_batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    def compile(self, spec: bool | str) -> None:
        """Compile the weight step and the (1st-order) architecture step."""
        self.weights.compile(spec)
        self.architect.compile(spec)

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        self.arch_steps = epoch >= self.arch_warmup_epochs
        # darts_compat: no epoch iterator, a fresh one per step = batches drawn with replacement
        self._val_batches = None if self.darts_compat or not self.arch_steps else iter(self.val)
        return {"arch_steps": self.arch_steps} if self.arch_warmup_epochs else {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        if not self.arch_steps:
            return self.weights(x, y)
        batches = self._val_batches if self._val_batches is not None else iter(self.val)
        xv, yv = next(batches)
        return self.update(x, y, xv, yv)

    def update(self, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor) -> StepOutput:
        """The two steps on given batches (also what ``optnb.nas.bench`` times)."""
        val_loss = self.architect.step(x, y, xv, yv)
        out = self.weights(x, y)
        world = distributed.current().world_size
        out.extra["search_val_loss"] = distributed.all_reduce_sum(val_loss.detach().float().clone()) / world
        return out

    def end_epoch(self) -> dict[str, Any]:
        return arch_record(self.model, self.derive_rule, self.max_skip, self.hb_pair)


def weight_optimizer(model: SearchNetwork, cfg: SearchConfig, device: torch.device) -> torch.optim.SGD:
    """SGD on the supernet's weights (never its architecture parameters)."""
    return torch.optim.SGD(model.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, fused=device.type == "cuda")


def arch_optimizer(model: SearchNetwork, cfg: SearchConfig) -> torch.optim.Adam:
    return torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr, betas=cfg.arch_betas,
                            weight_decay=cfg.arch_weight_decay)


def make_architect(model: SearchNetwork, cfg: SearchConfig, device: torch.device) -> Architect:
    """The architecture step of ``cfg`` on ``model`` (on ``device``): its optimisers
    (:func:`weight_optimizer`, :func:`arch_optimizer`), order, Hessian-vector product and
    precision (bf16 autocast with TF32 convolutions and matrix products on CUDA unless fp32)."""
    if device.type == "cuda" and cfg.precision != "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Architect(model, arch_optimizer(model, cfg), weight_optimizer(model, cfg, device), cfg.order,
                     cfg.hvp, fd_radius=cfg.fd_radius, autocast=autocast_factory(device, cfg.precision))


def bilevel_step(model: SearchNetwork, architect: Architect, cfg: SearchConfig, net: nn.Module,
                 optimizer: torch.optim.Optimizer, amp: bool, val: GpuLoader | None) -> BilevelStep:
    """The search's step: ``architect``'s step on a ``val`` batch, then the weight step through
    ``net`` (``model`` or its DDP wrapper) with the architecture detached."""
    weights = ClassifierStep(net, optimizer, amp=amp, grad_clip=cfg.grad_clip,
                             forward_kwargs={"detach_arch": True})
    return BilevelStep(model, architect, weights, val, cfg.derive_rule, cfg.darts_compat,
                       cfg.arch_warmup_epochs, cfg.max_skip, cfg.skip_hb_pair)


def early_stop(cfg: SearchConfig) -> list[Callback]:
    """The DARTS+ rule as a ``fit`` callback when ``cfg.early_stop`` asks for it (warm-up epochs,
    whose alphas do not move, never count as stable)."""
    if cfg.early_stop != "darts+":
        return []
    return [EarlyStop(cfg.stop_skips, cfg.stable_epochs or None, cfg.skip_hb_pair,
                      after_epoch=cfg.arch_warmup_epochs)]


def search(cfg: SearchConfig, images: torch.Tensor, labels: torch.Tensor,
           device: torch.device | str = "cpu", dataset: str = "embedded",
           run_dir: str | Path | None = None, resume: bool = True,
           callbacks: Sequence[Callback] = (), num_classes: int | None = None,
           compile: bool | str = False) -> SearchResult:
    """Run (or resume) one search; see the module docstring.

    ``images``/``labels``: the uint8 training set ``optnb.data.load(dataset)`` returns.
    ``resume=False`` starts over, replacing a checkpoint in ``run_dir``. ``compile``: the weight
    and 1st-order architecture steps through ``torch.compile`` (``optnb.train.compiling``;
    ``compiling.default_for(profile, "search")`` is the profile's choice). In a process group
    (torchrun) every rank calls this with the same arguments; rank 0 writes the run folder.
    """
    cfg = cfg.checked()
    device = torch.device(device)
    info = distributed.current()
    batch = rehearsal_overlay.step_batch(f"search:{cfg.space}:{cfg.order}", cfg.batch_size)  # a rehearsal's
    per_rank = rank_batch(batch, info.world_size)
    num_classes = num_classes or NUM_CLASSES.get(dataset, int(labels.max()) + 1)
    train_idx, val_idx = split_indices(len(images), cfg)
    shard = {"rank": info.rank, "world_size": info.world_size}
    opts = {"augment": True, "cutout": 0, "shuffle": True, "drop_last": True, **shard}
    train_loader = make_loader(dataset, images[train_idx], labels[train_idx], per_rank,
                               device, seed=cfg.seed, **opts)
    val_loader = make_loader(dataset, images[val_idx], labels[val_idx], per_rank, device,
                             seed=cfg.seed + 1, **opts)
    eval_loader = make_loader(dataset, images[val_idx], labels[val_idx], 2 * per_rank,
                              device, train=False, **shard)

    model = build_model(cfg, num_classes).to(device)
    if info.enabled:  # the weight step (DDP) never touches the architecture parameters
        arch_names = [n for n, p in model.named_parameters() if any(p is a for a in model.arch_parameters())]
        # DDP checks the reducer's parameters as f"{module}.{name}", i.e. ".alphas_normal" at the top
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [*arch_names, *(f".{n}" for n in arch_names)])
    architect = make_architect(model, cfg, device)
    w_opt, a_opt = architect.weight_optimizer, architect.arch_optimizer

    def make_step(net: nn.Module, optimizer: torch.optim.Optimizer, amp: bool) -> BilevelStep:
        return bilevel_step(model, architect, cfg, net, optimizer, amp, val_loader)

    options = FitOptions(steps_per_epoch=min(len(train_loader), len(val_loader)),
                         stop_after=cfg.epochs_limit or None, eval_every=cfg.val_every,
                         eval_split="val", amp=cfg.bf16, channels_last=False, resume=resume,
                         restart=not resume, identity=cfg.identity(), compile=compile)
    rehearsal_overlay.note_configuration(run_dir, "search", "search", cfg, cfg.batch_size, batch,
                                         {"dataset": dataset, "image_size": int(images.shape[-1])},
                                         compile=str(compile))
    with CrossRankBatchNorm() if info.enabled else contextlib.nullcontext():
        fitted = fit(model, train_loader, cfg, test=eval_loader, optimizer=w_opt, make_step=make_step,
                     state={"arch_optimizer": a_opt, "val_loader": val_loader}, device=device,
                     run_dir=run_dir, callbacks=[*callbacks, *early_stop(cfg)], options=options)
    genotype = model.genotype(cfg.derive_rule, cfg.max_skip, cfg.skip_hb_pair)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and info.is_main:
        (run_dir / "genotype.json").write_text(json.dumps(to_dict(genotype)) + "\n")
    return SearchResult(genotype, fitted.history, model, fitted.wall_s, str(device), run_dir,
                        fitted.resumed_from, cfg)
