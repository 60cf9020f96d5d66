"""Device checks for ``optnb.nas``: correctness on the accelerator first, then speed.

    python -m optnb.nas.gpu_check --device cuda --out results/gpu_check [--epoch]
    python -m optnb.nas.gpu_check --device cpu --tiny        # dry run of the same code

1. grouped mixed ops == naive per-edge ops on the device (fp32, TF32 off), value and gradient;
2. a bf16-autocast supernet forward stays close to fp32, and an optimised search step is finite;
3. DARTS's finite-difference Hessian-vector product against the exact one in fp32 (informative:
   ReLU kinks make the quotient noisy, see ``architect.mixed_hvp_fd``);
4. resume on the device: 2 epochs straight against 1 + resume + 1 (GPU kernels may be
   non-deterministic, so the difference is reported and bounded, not required to be zero);
5. ``bench.run`` naive vs optimised, first and second order, at the paper's search size;
6. with ``--epoch``: one full first-order search epoch at the paper's size (25k + 25k synthetic
   GPU-resident images, batch 64), extrapolated to the 50-epoch search in GPU-days.

Writes ``<out>/nas_gpu_check.json``; exit code 1 when a correctness check failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optnb.devicecheck import CheckLog

_LOG = CheckLog()
RESULTS = _LOG.results  # one list, shared with the harness
_check = _LOG.run


def _rel(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    fa = torch.cat([x.double().reshape(-1) for x in a])
    fb = torch.cat([x.double().reshape(-1) for x in b])
    return ((fa - fb).norm() / fb.norm().clamp_min(1e-30)).item()


def run_checks(device: torch.device, tiny: bool, epoch: bool) -> None:
    from optnb.nas import architect, bench
    from optnb.nas.search import SearchConfig, autocast_factory, search
    from optnb.nas.spaces import SearchNetwork

    C, layers, batch, side = (4, 3, 4, 8) if tiny else (16, 8, 64, 32)
    gen = torch.Generator().manual_seed(0)

    def batch_of(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, 3, side, side, generator=gen).to(device),
                torch.randint(0, 10, (n,), generator=gen).to(device))

    def grouped_equals_naive() -> dict[str, Any]:
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            out = {}
            for space in ("darts", "hb", "agd"):
                naive = SearchNetwork(space, C=C, layers=layers, grouped=False).to(device)
                naive.init_arch("random", scale=1.0, generator=torch.Generator().manual_seed(1))
                fast = copy.deepcopy(naive)
                for cell in fast.cells:
                    cell.grouped = True
                x, y = batch_of(batch)
                la, lb = F.cross_entropy(naive(x), y), F.cross_entropy(fast(x), y)
                ga = torch.autograd.grad(la, list(naive.parameters()))
                gb = torch.autograd.grad(lb, list(fast.parameters()))
                out[space] = {"loss_diff": abs(la.item() - lb.item()), "grad_rel": _rel(gb, ga)}
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        worst = max(v["grad_rel"] for v in out.values())
        return {"ok": worst < 1e-4, "worst_grad_rel": worst, **out}

    def bf16_close_to_fp32() -> dict[str, Any]:
        net = SearchNetwork("agd", C=C, layers=layers).to(device).eval()
        x, _ = batch_of(batch)
        with torch.no_grad():
            ref = net(x)
            with autocast_factory(device, "bf16")():
                low = net(x).float()
        rel = ((low - ref).norm() / ref.norm()).item()
        return {"ok": bool(torch.isfinite(low).all()) and rel < 0.1, "logits_rel_err": rel}

    def hvp_fd_vs_exact() -> dict[str, Any]:
        net = SearchNetwork("darts", C=C, layers=layers).to(device)
        net.init_arch("random", scale=0.5, generator=torch.Generator().manual_seed(2))
        x, y = batch_of(batch)
        v = {n: torch.randn(p.shape, generator=gen).to(device)
             for n, p in net.named_weight_parameters()}
        exact = architect.mixed_hvp_exact(net, x, y, v)
        out = {f"r={r:g}": _rel(architect.mixed_hvp_fd(net, x, y, v, r), exact)
               for r in (1e-2, 1e-3)}
        return {"ok": all(v == v for v in out.values()), "fd_rel_err": out}

    def resume_on_device() -> dict[str, Any]:
        images = torch.randint(0, 256, (32 if tiny else 512, 3, side, side), dtype=torch.uint8,
                               generator=gen)
        labels = torch.randint(0, 10, (len(images),), generator=gen)
        cfg = {"C": C, "layers": min(layers, 5), "batch_size": 8, "epochs": 2, "space": "agd"}
        straight = search(SearchConfig(**cfg), images, labels, device, "synthetic")
        with tempfile.TemporaryDirectory() as tmp:
            search(SearchConfig(epochs_limit=1, **cfg), images, labels, device, "synthetic", tmp)
            resumed = search(SearchConfig(**cfg), images, labels, device, "synthetic", tmp)
        diff = max((a.double() - b.double()).abs().max().item() for a, b in
                   zip(straight.model.arch_parameters(), resumed.model.arch_parameters()))
        return {"ok": diff < 1e-3, "max_alpha_diff": diff, "resumed_from": resumed.resumed_from}

    def bench_order(order: int) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            kw = {"C": 4, "layers": 3, "batch_size": 4, "image_size": 8, "steps": 1,
                  "warmup": 0} if tiny else {"steps": 10 if order == 2 else 20}
            return bench.run(str(device), order=order, quiet=False, **kw)
        return run

    def one_epoch() -> dict[str, Any]:
        n = 512 if tiny else 50_000
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
        labels = torch.randint(0, 10, (n,), generator=gen)
        cfg = SearchConfig(C=C, layers=layers, batch_size=batch, epochs=50, epochs_limit=1,
                           space="darts")
        result = search(cfg, images, labels, device, "synthetic")
        epoch_s = result.history[-1]["epoch_s"]
        return {"epoch_s": epoch_s, "steps": result.history[-1]["steps"],
                "search_50_epochs_gpu_days": 50 * epoch_s / 86400}

    _check("grouped mixed ops == naive (fp32)", grouped_equals_naive)
    _check("bf16 autocast close to fp32", bf16_close_to_fp32)
    _check("finite-difference HVP vs exact (fp32)", hvp_fd_vs_exact)
    _check("exact resume on the device", resume_on_device)
    _check("bench: search step, 1st order", bench_order(1))
    _check("bench: search step, 2nd order", bench_order(2))
    if epoch:
        _check("one paper-size 1st-order search epoch", one_epoch)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optnb.nas.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="results/gpu_check")
    p.add_argument("--tiny", action="store_true", help="dry-run sizes (CPU testing)")
    p.add_argument("--epoch", action="store_true", help="also time one full search epoch")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible; nothing to check", file=sys.stderr)
        return 2
    RESULTS.clear()
    run_checks(device, args.tiny, args.epoch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    (out / "nas_gpu_check.json").write_text(json.dumps({"environment": env, "checks": RESULTS},
                                                       indent=1, default=str) + "\n")
    return 0 if all(r["ok"] for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
