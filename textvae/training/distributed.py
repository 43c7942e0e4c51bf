"""Data-parallel training under torchrun: joining the process group, and who does what.

`torchrun --nproc-per-node N -m textvae train ...` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set. Each joins the group (NCCL on GPUs, gloo on CPUs); only rank 0 writes files and
talks to the user.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def launched_rank() -> int:
    """This process's rank as torchrun announced it (0 outside torchrun), before any group exists."""
    return int(os.environ.get("RANK", "0"))


def start(device: str) -> None:
    """Under torchrun (WORLD_SIZE > 1), join the process group; otherwise do nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        return
    import torch
    use_nccl = device != "cpu" and torch.cuda.is_available()
    if use_nccl:
        here, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if here > gpus:         # NCCL cannot put two processes on one GPU
            from ..settings import RunError
            raise RunError(f"torchrun started {here} processes on this machine, which has {gpus} GPU"
                           f"{'s' if gpus != 1 else ''}: one process per GPU (--nproc-per-node {gpus}), or "
                           "--device cpu to train on the CPU")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_nccl else "gloo")


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is running."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """The GPU of this process (LOCAL_RANK) when several processes share a machine's GPUs."""
    rank, world = rank_world()
    if device.type == "cuda" and world > 1:
        import torch
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return device


def agree(device: torch.device, *flags: bool) -> list[bool]:
    """Every process takes the same decision: true for all if true for any."""
    if rank_world()[1] == 1:
        return list(flags)
    import torch
    import torch.distributed as dist
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def from_first(device: torch.device, *values: float) -> list[float]:
    """The first process's `values`, in every process (as they are, with one process)."""
    if rank_world()[1] == 1:
        return list(values)
    import torch
    figures = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.broadcast(figures, 0)
    return figures.tolist()
