"""DDP on CPU (gloo): 2 ranks with batch B train exactly like 1 process with batch 2B."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_util import assert_no_ddp_left
from torch import nn

pytestmark = pytest.mark.distributed  # spawns processes; the torchrun test is also `slow`


def _model() -> nn.Module:
    # no BatchNorm (per-rank statistics) and no dropout (per-rank RNG): what DDP makes exact
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(24, 10))


def _train(rank: int, world: int, batch: int, run_dir: str) -> dict[str, torch.Tensor]:
    from optnb import data
    from optnb.train import FitOptions, fit, recipes

    x, y = data.load("synthetic", num_samples=40, image_size=8, seed=0)
    kw = dict(mean=data.MEAN["synthetic"], std=data.STD["synthetic"], rank=rank, world_size=world)
    train = data.GpuLoader(x, y, batch, augment=True, cutout=2, padding=2, seed=3, **kw)
    test = data.GpuLoader(x[:10], y[:10], 4, augment=False, shuffle=False, drop_last=False, **kw)
    recipe = recipes.get("densenet_cifar").replace(epochs=2, milestones=(0.5,))
    model = _model()
    # with a run folder, fit writes <run_dir>/metrics.jsonl itself (rank 0 only)
    result = fit(model, train, recipe, test=test, device="cpu", run_dir=run_dir,
                 options=FitOptions(steps_per_epoch=3, log_every=1))
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out["test_loss"] = torch.tensor(result.final["test_loss"], dtype=torch.float64)
    return out


def _worker(rank: int, world: int, batch: int, run_dir: str, init: str, out_path: str) -> None:
    from optnb.train import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        state = _train(rank, world, batch, run_dir)
        torch.save(state, f"{out_path}.{rank}")
    finally:
        distributed.shutdown()
    assert_no_ddp_left(rank)


def test_two_gloo_ranks_match_one_process(tmp_path):
    single = _train(0, 1, 8, str(tmp_path / "single"))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    init = f"file://{tmp_path / 'rendezvous'}"
    out = str(tmp_path / "state")
    mp.spawn(_worker, args=(2, 4, str(tmp_path / "ddp"), init, out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1)]
    for key, ref in single.items():
        for state in ranks:
            torch.testing.assert_close(state[key], ref, rtol=0, atol=1e-6, msg=key)
    # rank 0 alone wrote the checkpoint and the metrics (one "start" record, not two)
    assert (tmp_path / "ddp" / "checkpoint.pt").is_file()
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert sum('"kind": "start"' in line for line in lines) == 1


class _SelfReferencing:
    """Holds a network in a reference cycle, as a compiled step does (through its compiled
    bound method): only a cyclic collection frees it."""

    def __init__(self, net: nn.Module) -> None:
        self.net, self.forward = net, self.run

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_shutdown_frees_a_ddp_wrapper_left_in_a_cycle(tmp_path):
    from optnb.train import distributed

    gc.disable()  # no automatic collection may free the cycle before shutdown does
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        holder = _SelfReferencing(nn.parallel.DistributedDataParallel(_model()))
        holder.forward(torch.zeros(2, 3, 4, 4)).sum().backward()
        wrapper = weakref.ref(holder.net)
        del holder
        assert wrapper() is not None  # the cycle keeps it, and with it the group
    finally:
        distributed.shutdown()
        gc.enable()
    assert wrapper() is None and not dist.is_initialized()

@pytest.mark.slow
def test_torchrun_cli_two_processes(tmp_path):
    """``torchrun --nproc_per_node 2 -m optnb train`` runs a smoke row; rank 0 writes once."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not installed next to this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPTNB_DOWNLOAD": "0"}
    cmd = [str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node", "2", "-m",
           "optnb", "train", "--model", "resnet56", "--profile", "smoke", "--device", "cpu",
           "--results-dir", str(tmp_path), "--run-id", "ddp", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "ddp"
    sidecar = json.loads((run / "result.json").read_text())
    assert (run / "checkpoint.pt").is_file() and sidecar["status"] == "complete"
    assert sidecar["results"]["world_size"]["value"] == 2
    assert proc.stdout.count("done: test_error") == 1
