"""What the spawned ranks of the gloo tests check after leaving the process group."""

from __future__ import annotations

import gc

from torch import nn


def assert_no_ddp_left(rank: int) -> None:
    """No DDP wrapper outlived ``distributed.shutdown()``: one left alive keeps the group's gloo
    threads running into interpreter exit, where they can abort the process (see its docstring)."""
    alive = [o for o in gc.get_objects() if isinstance(o, nn.parallel.DistributedDataParallel)]
    assert not alive, f"rank {rank}: {len(alive)} DDP wrapper(s) outlived the process group"
