"""GPU check of optnb's data loader and training engine: correctness first, then speed.

Run by ``benchmarks/gpu_check.sh`` (which sets up the environment). Writes
``$OUT/gpu_check.json`` and ``$OUT/gpu_check.md``; the exit code is 1 when a correctness check
failed (the speed section still runs, so one device session yields every number).

``--device cpu --tiny`` is a dry run of the same code on a CPU with tiny sizes (used to test the
script without a GPU; its timings mean nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from optnb.devicecheck import CheckLog

_LOG = CheckLog()
RESULTS = _LOG.results  # one list, shared with the harness
check = _LOG.run


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=os.environ.get("OUT", "results/gpu_check"))
    p.add_argument("--tiny", action="store_true", help="dry run sizes (CPU testing)")
    p.add_argument("--epoch-images", type=int, default=50_000)
    p.add_argument("--no-bench", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible; nothing to check", file=sys.stderr)
        return 2

    from optnb import data, models
    from optnb.train import FitOptions, TrainingDivergedError, bench, fit, recipes

    tiny = args.tiny
    env = {"torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "capability": list(torch.cuda.get_device_capability(dev)) if dev.type == "cuda" else None,
           "bf16": torch.cuda.is_bf16_supported() if dev.type == "cuda" else None,
           "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print("environment:", json.dumps(env), flush=True)

    # -- 1. the loader on the device --------------------------------------------------------
    def loader_checks() -> dict[str, Any]:
        x, y = data.load("synthetic", num_samples=64, seed=0)
        mean, std = data.MEAN["synthetic"], data.STD["synthetic"]
        plain = [data.GpuLoader(x, y, 16, d, augment=False, shuffle=False, mean=mean, std=std)
                 for d in ("cpu", dev)]
        diff = max(float((a.cpu() - b.cpu()).abs().max()) for (a, _), (b, _) in zip(*plain))
        aug = data.GpuLoader(x, y, 16, dev, augment=True, cutout=8, seed=1, mean=mean, std=std)
        list(aug)
        state = aug.state_dict()
        ref = [(a.clone(), b.clone()) for a, b in aug]
        again = data.GpuLoader(x, y, 16, dev, augment=True, cutout=8, seed=1, mean=mean, std=std)
        again.load_state_dict(state)
        same = all(torch.equal(a, c) and torch.equal(b, e) for (a, b), (c, e) in zip(ref, again))
        whole = list(data.GpuLoader(x, y, 16, dev, seed=2, mean=mean, std=std))
        halves = [list(data.GpuLoader(x, y, 8, dev, seed=2, rank=r, world_size=2, mean=mean,
                                      std=std)) for r in (0, 1)]
        shards = all(torch.equal(torch.cat([a[0], b[0]]), w[0])
                     for w, a, b in zip(whole, *halves))
        return {"ok": diff < 1e-5 and same and shards, "normalise_max_diff_vs_cpu": diff,
                "resume_order_equal": same, "shards_equal_global": shards}

    # -- 2. models: HBNet(beta=0) == ResNet on the device -------------------------------------
    def hb_special_case() -> dict[str, Any]:
        torch.manual_seed(0)
        res = models.build("resnet20" if tiny else "resnet56").to(dev).eval()
        hb = models.build("hbnet20" if tiny else "hbnet56", beta=0.0).to(dev).eval()
        hb.load_state_dict(res.state_dict())
        x = torch.randn(8, 3, 32, 32, device=dev)
        with torch.no_grad():
            diff = float((res(x) - hb(x)).abs().max())
        return {"ok": diff <= 1e-5, "max_abs_diff": diff}

    # -- 3. fused SGD == foreach SGD ----------------------------------------------------------
    def fused_sgd() -> dict[str, Any]:
        torch.manual_seed(0)
        nets = [models.build("resnet8").to(dev) for _ in range(2)]
        nets[1].load_state_dict(nets[0].state_dict())
        x, y = torch.randn(16, 3, 32, 32, device=dev), torch.randint(0, 10, (16,), device=dev)
        kinds = ({"fused": True}, {"foreach": True}) if dev.type == "cuda" else ({}, {"foreach": True})
        for net, kw in zip(nets, kinds):
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                  weight_decay=1e-4, **kw)
            for _ in range(3):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        with torch.no_grad():
            diff = max(float((a - b).abs().max()) for a, b in zip(*(n.parameters() for n in nets)))
        return {"ok": diff < 1e-4, "max_abs_diff": diff}

    # -- 4. engine: bf16 + channels_last training, resume, divergence guard ---------------------
    def engine_resume() -> dict[str, Any]:
        x, y = data.load("synthetic", num_samples=256 if tiny else 2048, seed=0)
        recipe = recipes.get("densenet_cifar").replace(epochs=2, milestones=(0.5,))

        def run(folder: Path, **kw: Any) -> Any:
            torch.manual_seed(0)
            loader = data.make_loader("synthetic", x, y, 64, device=dev, seed=0)
            return fit(models.build("resnet8"), loader, recipe, device=dev, run_dir=folder,
                       options=FitOptions(**kw))

        with tempfile.TemporaryDirectory() as tmp:
            a = run(Path(tmp) / "a")
            run(Path(tmp) / "b", stop_after=1)
            b = run(Path(tmp) / "b", resume=True)
            sa = torch.load(Path(tmp) / "a" / "checkpoint.pt", weights_only=True)["model"]
            sb = torch.load(Path(tmp) / "b" / "checkpoint.pt", weights_only=True)["model"]
        diff = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
        la, lb = a.history[-1]["train_loss"], b.history[-1]["train_loss"]
        return {"ok": diff < 1e-2 and abs(la - lb) < 1e-2 * max(1.0, abs(la)),
                "max_abs_weight_diff": diff, "bitwise": diff == 0.0, "loss_straight": la,
                "loss_resumed": lb, "amp_bf16": dev.type == "cuda"}

    def divergence_guard() -> dict[str, Any]:
        x, y = data.load("synthetic", num_samples=256, seed=0)
        recipe = recipes.get("densenet_cifar").replace(epochs=2, lr=1e6)
        loader = data.make_loader("synthetic", x, y, 64, device=dev, seed=0)
        try:
            fit(models.build("resnet8"), loader, recipe, device=dev)
        except TrainingDivergedError as err:
            return {"ok": True, "message": str(err)[:160]}
        return {"ok": False, "message": "lr 1e6 did not diverge"}

    def learns_embedded() -> dict[str, Any]:
        x, y = data.load("embedded")
        xt, yt = data.load("embedded", train=False)
        torch.manual_seed(0)
        epochs = 2 if tiny else 15
        recipe = recipes.get("resnet_cifar").replace(epochs=epochs, batch_size=64)
        train = data.make_loader("embedded", x, y, 64, device=dev, seed=0)
        test = data.make_loader("embedded", xt, yt, 256, device=dev, train=False)
        res = fit(models.build("resnet20"), train, recipe, test=test, device=dev)
        err = res.final["test_error"]
        return {"ok": tiny or err < 10.0, "test_error_pct": err, "epochs": epochs,
                "train_s": round(res.train_time_s, 2)}

    check("loader_on_device", loader_checks)
    check("hbnet_beta0_equals_resnet", hb_special_case)
    check("fused_sgd_matches_foreach", fused_sgd)
    check("engine_resume_bf16_channels_last", engine_resume)
    check("divergence_guard", divergence_guard)
    check("learns_embedded_digits", learns_embedded)
    correct = all(r["ok"] for r in RESULTS)

    report: dict[str, Any] = {"environment": env, "checks": RESULTS, "correct": correct}
    if not args.no_bench:
        t0 = time.perf_counter()
        try:
            sizes_quick = tiny
            pairs = [("resnet8", "hbnet8")] if tiny else list(bench.PAIRS)
            report["bench"] = bench.run(str(dev), quick=sizes_quick, pairs=pairs,
                                        epoch_images=256 if tiny else args.epoch_images)
            bench.write(report["bench"], out)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            report["bench_error"] = f"{type(exc).__name__}: {exc}"
        report["bench_s"] = round(time.perf_counter() - t0, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    lines = [f"# optnb GPU check, {env['date']}", "",
             f"{env['device']} (capability {env['capability']}), torch {env['torch']}, "
             f"CUDA {env['cuda']}, cuDNN {env['cudnn']}", "", "| check | ok | s | detail |",
             "|---|---|---|---|"]
    for r in RESULTS:
        detail = {k: v for k, v in r.items() if k not in ("check", "ok", "seconds")}
        lines.append(f"| {r['check']} | {'yes' if r['ok'] else '**NO**'} | {r['seconds']} | "
                     f"{json.dumps(detail, default=str)[:300]} |")
    if "bench" in report:
        lines += ["", "## Speed", "", bench.to_markdown(report["bench"])]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if correct else 1


if __name__ == "__main__":
    raise SystemExit(main())
