"""Distributed data parallel through ``torchrun``: NCCL on GPUs, gloo on CPUs, rank 0 writes.

``torchrun --nproc_per_node N -m optnb train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_from_env` joins the process group and picks the device. Each rank's loader takes its
slice of every global batch (``optnb.data.GpuLoader(rank=, world_size=)``), DDP averages the
gradients, so N ranks with batch ``B`` train like one process with batch ``N * B`` (up to
BatchNorm, whose statistics are per rank unless ``sync_bn`` converts it to ``SyncBatchNorm``).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> DistInfo:
    """The process group this process is in (a single-process ``DistInfo`` when none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(),
                        int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_backend())
    return DistInfo()


def init_from_env(device: torch.device | None = None) -> tuple[DistInfo, torch.device | None]:
    """Join the group described by torchrun's environment; returns the info and the device.

    Without ``WORLD_SIZE > 1`` nothing happens. On CUDA each rank uses ``cuda:LOCAL_RANK`` and
    NCCL; otherwise gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    if dist.is_initialized():
        return current(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    if use_cuda:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend), device


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device,
         sync_bn: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when the group has more than one rank."""
    if not info.enabled:
        return model
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, and free it.

    ``destroy_process_group`` only drops the group registry's reference. A DDP wrapper that is
    still alive, say in a reference cycle (a step holding its own bound method) that no collection
    has freed yet, keeps the group and its gloo worker threads running. At interpreter exit such a
    thread may still hold a finished collective with a Python object in it. Releasing that object
    then needs the GIL, and the process aborts ("terminate called without an active exception").
    Collecting first frees every such wrapper, so the group's threads are joined here."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
