"""The search loop of paper §9.3: bilevel alternation, per-epoch checkpoints, JSONL logs.

Each iteration draws a train batch and a val batch (the 25k/25k split of the CIFAR-10 training
set; the profile shrinks it), takes an architecture step (``architect.py``), then a weight step
(SGD, momentum 0.9, wd 3e-4, grad-clip 5, cosine lr from 0.025 to 0). Architecture: Adam 3e-4,
betas (0.5, 0.999), wd 1e-3, for alphas and AGD edge logits alike.

Every epoch writes, atomically, one checkpoint with the weights, alphas and edge logits, both
optimisers, the epoch (which fixes the lr of the closed-form cosine schedule), both loaders' data
order and all RNG states, so ``search(..., resume=True)`` continues exactly; and appends one JSON
line with losses, accuracies, lr, timings, softmax(alpha), path weights, the derived genotype and
how many parameter-free ops it holds. Several seeds run as separate processes (``optnb search
--seeds 0 1 2 3 --jobs 4``).

DARTS-code fidelity quirks (fixed by default) come back with ``darts_compat=True``: first/last
split, arch batches drawn with replacement (``next(iter(valid_queue))``), the lr off by one epoch
(epoch e runs at lr(e+1)) and ``eta_min = 0.001``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optnb.nas.architect import HVP_MODES, ORDERS, Architect
from optnb.nas.derive import check_rule
from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype, count_parameter_free, to_dict
from optnb.nas.network import count_parameters
from optnb.nas.spaces import CELL_OUTPUTS, INITS, SearchNetwork, check_space

PRECISIONS = ("auto", "fp32", "bf16")
CHECKPOINT = "search_ckpt.pt"
LOG = "search.jsonl"
FORMAT = "optnb.nas.search/1"
#: config keys that may change between a checkpoint and its resume
_RESUME_FREE = ("val_every", "epochs_limit")


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
    val_every: int = 1  # full validation pass every k epochs (and after the last)
    epochs_limit: int = 0  # stop after this many epochs in this call (0: run to the end)
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
        return replace(self, derive_rule=check_rule(self.space, self.derive_rule))

    @property
    def eta_min(self) -> float:
        return 0.001 if self.darts_compat else self.lr_min

    def lr_at(self, epoch: int) -> float:
        """Closed-form cosine annealing (no restart); DARTS-compat runs epoch e at lr(e+1)."""
        e = min(epoch + 1, self.epochs) if self.darts_compat else epoch
        return self.eta_min + 0.5 * (self.lr - self.eta_min) * (1 + math.cos(math.pi * e / self.epochs))


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
        return bool(self.history) and self.history[-1]["epoch"] >= self.config.epochs

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


def build_model(cfg: SearchConfig, num_classes: int = 10) -> SearchNetwork:
    """The supernet of ``cfg``, weights and architecture initialised from ``cfg.seed`` alone
    (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = SearchNetwork(cfg.space, cfg.C, num_classes, cfg.layers, cfg.primitives,
                              cfg.steps, cfg.cell_output,
                              track_running_stats=cfg.track_running_stats, grouped=cfg.grouped)
    model.init_arch(cfg.init, cfg.alpha_scale, cfg.hb_init_logit,
                    torch.Generator().manual_seed(cfg.seed))
    return model


def arch_record(model: SearchNetwork, rule: str) -> dict[str, Any]:
    """The architecture part of a log line: weights, derived genotype, collapse diagnostics."""
    state = model.arch_state()
    genotype = model.genotype(rule)
    out: dict[str, Any] = {"genotype": to_dict(genotype),
                           "param_free": count_parameter_free(genotype)}
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


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, autocast: Callable[[], Any]) -> tuple[float, float]:
    """Mean loss and top-1 accuracy over a loader, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device)
    count = 0
    for x, y in loader:
        with autocast():
            logits = model(x)
        logits = logits[0] if isinstance(logits, tuple) else logits
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
    model.train(was_training)
    return loss_sum.item() / max(count, 1), correct.item() / max(count, 1)


def open_checkpoint(path: Path, fmt: str, cfg: Any, free: tuple[str, ...],
                    device: torch.device | str) -> dict[str, Any]:
    """Load a search or evaluation checkpoint to resume from, refusing one of another kind
    (``fmt``) or one made with other settings (every ``cfg`` field except those in ``free``)."""
    from optnb.train.checkpoint import load_checkpoint

    state = load_checkpoint(path, map_location=device)
    if state.get("format") != fmt:
        raise NasError(f"{path} is not a {fmt} checkpoint ({state.get('format')!r})")
    saved, now = state["config"], asdict(cfg)
    diff = [k for k in now if k not in free and _plain(saved.get(k)) != _plain(now[k])]
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise NasError(f"checkpoint {path} was made with other settings ({details}); "
                       "use another run directory or resume=False")
    return state


def mirror_log(run_dir: Path | None, name: str, history: list[dict[str, Any]]) -> None:
    """Rewrite the JSONL log from the checkpoint's history, so the two never disagree."""
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in history))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def search(cfg: SearchConfig, images: torch.Tensor, labels: torch.Tensor,
           device: torch.device | str = "cpu", dataset: str = "embedded",
           run_dir: str | Path | None = None, resume: bool = True, monitor: Any = None,
           num_classes: int | None = None) -> SearchResult:
    """Run (or resume) one search; see the module docstring.

    ``images``/``labels``: the uint8 training set ``optnb.data.load(dataset)`` returns.
    ``monitor``: optional object with ``step(epoch, step, steps, loss)`` (called every
    ``monitor.step_every`` steps when that is > 0) and ``epoch(record, model)``.
    """
    from optnb.data import NUM_CLASSES, make_loader
    from optnb.train.checkpoint import rng_state, save_atomic, set_rng_state

    cfg = cfg.checked()
    device = torch.device(device)
    num_classes = num_classes or NUM_CLASSES.get(dataset, int(labels.max()) + 1)
    train_idx, val_idx = split_indices(len(images), cfg)
    opts = {"augment": True, "cutout": 0, "shuffle": True, "drop_last": True}
    train_loader = make_loader(dataset, images[train_idx], labels[train_idx], cfg.batch_size,
                               device, seed=cfg.seed, **opts)
    val_loader = make_loader(dataset, images[val_idx], labels[val_idx], cfg.batch_size, device,
                             seed=cfg.seed + 1, **opts)
    eval_loader = make_loader(dataset, images[val_idx], labels[val_idx], 2 * cfg.batch_size,
                              device, train=False)
    steps = min(len(train_loader), len(val_loader))

    model = build_model(cfg, num_classes).to(device)
    weights = model.weight_parameters()
    w_opt = torch.optim.SGD(weights, lr=cfg.lr, momentum=cfg.momentum,
                            weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr, betas=cfg.arch_betas,
                             weight_decay=cfg.arch_weight_decay)
    autocast = autocast_factory(device, cfg.precision)
    if device.type == "cuda" and cfg.precision != "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    architect = Architect(model, a_opt, w_opt, cfg.order, cfg.hvp, fd_radius=cfg.fd_radius,
                          autocast=autocast)

    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_dir / CHECKPOINT if run_dir else None
    history: list[dict[str, Any]] = []
    start, wall = 0, 0.0
    if ckpt_path is not None and resume and ckpt_path.is_file():
        state = open_checkpoint(ckpt_path, FORMAT, cfg, _RESUME_FREE, device)
        model.load_state_dict(state["model"])
        w_opt.load_state_dict(state["weight_optimizer"])
        a_opt.load_state_dict(state["arch_optimizer"])
        train_loader.load_state_dict(state["train_loader"])
        val_loader.load_state_dict(state["val_loader"])
        set_rng_state(state["rng"])
        history, start, wall = list(state["history"]), int(state["epoch"]), float(state["wall_s"])
    mirror_log(run_dir, LOG, history)
    resumed_from = start
    stop = cfg.epochs if not cfg.epochs_limit else min(cfg.epochs, start + cfg.epochs_limit)

    step_every = int(getattr(monitor, "step_every", 0) or 0)
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        lr = cfg.lr_at(epoch)
        for group in w_opt.param_groups:
            group["lr"] = lr
        model.train()
        sums = torch.zeros(4, device=device)  # train loss*B, train correct, val loss, n
        val_iter = None if cfg.darts_compat else iter(val_loader)
        for step, (x, y) in enumerate(train_loader):
            if step >= steps:
                break
            # darts_compat: a fresh iterator per step = batches drawn with replacement
            xv, yv = next(iter(val_loader)) if val_iter is None else next(val_iter)
            val_loss = architect.step(x, y, xv, yv)
            with autocast():
                logits = model(x, detach_arch=True)
            loss = F.cross_entropy(logits.float(), y)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
            w_opt.step()
            with torch.no_grad():
                sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float(),
                                     val_loss.float(), torch.ones((), device=device)])
            if step_every and (step + 1) % step_every == 0:
                monitor.step(epoch, step + 1, steps, loss.item())
        total = sums.tolist()
        n_img = max(total[3], 1.0) * cfg.batch_size
        record: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr, "steps": int(total[3]),
            "train_loss": total[0] / n_img, "train_acc": total[1] / n_img,
            "search_val_loss": total[2] / max(total[3], 1.0),
            "val_loss": None, "val_acc": None,
        }
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            record["val_loss"], record["val_acc"] = evaluate(model, eval_loader, autocast)
        record.update(arch_record(model, cfg.derive_rule))
        epoch_s = time.perf_counter() - t0
        wall += epoch_s
        record.update({"epoch_s": epoch_s, "wall_s": wall})
        history.append(record)
        if ckpt_path is not None:
            save_atomic({
                "format": FORMAT, "config": asdict(cfg), "epoch": epoch + 1,
                "model": model.state_dict(), "weight_optimizer": w_opt.state_dict(),
                "arch_optimizer": a_opt.state_dict(), "train_loader": train_loader.state_dict(),
                "val_loader": val_loader.state_dict(), "rng": rng_state(), "history": history,
                "wall_s": wall,
            }, ckpt_path)
            with (run_dir / LOG).open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        if monitor is not None:
            monitor.epoch(record, model)
    genotype = model.genotype(cfg.derive_rule)
    if run_dir is not None:
        (run_dir / "genotype.json").write_text(json.dumps(to_dict(genotype)) + "\n")
    return SearchResult(genotype, history, model, wall, str(device), run_dir, resumed_from, cfg)


def supernet_parameters(cfg: SearchConfig, num_classes: int = 10) -> int:
    """Weights of the supernet of ``cfg`` (architecture parameters excluded)."""
    return count_parameters(build_model(cfg, num_classes))


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """The JSONL search log of a run directory."""
    path = Path(run_dir) / LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

