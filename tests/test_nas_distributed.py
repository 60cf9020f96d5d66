"""Data-parallel search on CPU (gloo): 2 ranks with the global batch split equal 1 process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_util import assert_no_ddp_left

from optnb.nas.errors import NasError
from optnb.nas.search import SearchConfig, build_model, rank_batch, search
from optnb.train import LOG_NAME, distributed, read_jsonl

pytestmark = pytest.mark.distributed  # spawns processes; the torchrun test is also `slow`

# global batch 8 (4 per rank), 16 train / 16 val images: 2 bilevel steps per epoch. agd has edge
# logits, so their all-reduce is covered too; arch_lr 10x DARTS's so the alphas move far more than
# the tolerance
TINY = {"space": "agd", "C": 4, "layers": 3, "steps": 2, "batch_size": 8, "max_images": 32,
        "epochs": 2, "arch_lr": 3e-3}
ATOL = 1e-5  # float32: measured differences are ~1e-7


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    return images, torch.randint(0, 10, (40,), generator=gen)


def _search(run_dir: str | None, **change) -> dict[str, torch.Tensor]:
    result = search(SearchConfig(**{**TINY, **change}), *_data(), device="cpu", dataset="synthetic",
                    run_dir=run_dir)
    out = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
    out["val_loss"] = torch.tensor(result.history[-1]["val_loss"], dtype=torch.float64)
    return out


def _worker(rank: int, world: int, root: str, init: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        runs = {"straight": _search(f"{root}/ddp"),
                "order2": _search(None, order=2, hvp="exact", epochs=1)}
        _search(f"{root}/resume", epochs_limit=1)
        runs["resumed"] = _search(f"{root}/resume")
        torch.save(runs, f"{root}/state.{rank}")
    finally:
        distributed.shutdown()
    assert_no_ddp_left(rank)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> float:
    """Asserts every tensor of ``a`` is within ``atol`` of ``b``; returns the largest difference."""
    worst = 0.0
    for key, ref in b.items():
        torch.testing.assert_close(a[key], ref, rtol=0, atol=atol, msg=key)
        if ref.is_floating_point():
            worst = max(worst, float((a[key].double() - ref.double()).abs().max()))
    return worst


def test_two_gloo_ranks_search_like_one_process(tmp_path):
    single = _search(None)
    single2 = _search(None, order=2, hvp="exact", epochs=1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(2, str(tmp_path), f"file://{tmp_path / 'rendezvous'}"), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"state.{r}", weights_only=True) for r in (0, 1)]
    init = build_model(SearchConfig(**TINY).checked()).alphas_normal.detach()
    moved = float((single["alphas_normal"] - init).abs().max())
    assert moved > 100 * ATOL  # the alphas did move: agreement is not trivial
    for state in ranks:
        worst = _close(state["straight"], single, ATOL)  # alphas, edge logits, weights, BN statistics
        worst2 = _close(state["order2"], single2, ATOL)
        print(f"largest difference to 1 process: first order {worst:.1e}, second order {worst2:.1e}")
        _close(state["resumed"], state["straight"], 0.0)  # kill-free resume under 2 ranks is exact
    _close(ranks[1]["straight"], ranks[0]["straight"], 0.0)  # the ranks agree bitwise
    # rank 0 alone wrote the log, the checkpoint and the genotype
    assert (tmp_path / "ddp" / "genotype.json").is_file()
    lines = (tmp_path / "ddp" / LOG_NAME).read_text().splitlines()
    assert sum('"start_epoch"' in line for line in lines) == 1  # one fit-start record, not two
    assert [r["epoch"] for r in read_jsonl(tmp_path / "resume" / LOG_NAME, "epoch")] == [1, 2]


def test_the_global_batch_must_split_over_the_ranks():
    assert rank_batch(8, 2) == 4 and rank_batch(8, 1) == 8
    with pytest.raises(NasError, match="multiple of 3"):
        rank_batch(8, 3)


@pytest.mark.slow
def test_torchrun_search_cli_two_processes(tmp_path):
    """``torchrun --nproc_per_node 2 -m optnb search`` writes one run folder, one sidecar."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not installed next to this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPTNB_DOWNLOAD": "0"}
    cmd = [str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node", "2", "-m",
           "optnb", "search", "--space", "hb", "--epochs", "1", "--profile", "smoke", "--device", "cpu",
           "--results", str(tmp_path), "--run-id", "ddp"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["ddp"]
    sidecar = json.loads((runs[0] / "result.json").read_text())
    assert sidecar["status"] == "complete" and sidecar["results"]["world_size"]["value"] == 2
    assert (runs[0] / "checkpoint.pt").is_file() and (runs[0] / "genotype.json").is_file()
    assert proc.stdout.count("run folder:") == 1
