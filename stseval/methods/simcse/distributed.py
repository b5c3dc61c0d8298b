"""Data-parallel training under torchrun or accelerate launch: rank and world size, and the collectives the loop uses.

Launch the same command under torchrun (tested on 2 CPU processes with gloo) or accelerate launch
(which sets the same RANK / WORLD_SIZE / LOCAL_RANK variables):
    torchrun --nproc_per_node 4 -m stseval.cli simcse-train --tasks STS-B --pooling cls --out runs/simcse
Every process takes batch_size sentences of a global batch of batch_size x processes; the loss gathers
the negatives of every process, and the gradients are averaged over processes (all-reduce, as
DistributedDataParallel does; DDP itself refuses the several forward passes of one step that the
length-sorted chunks make), so the loss and the step equal one process on the global batch. Only rank 0
writes. The loop calls the collectives only when the world size is above 1.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch (initialising the process group), else (0, 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def broadcast_parameters(model: nn.Module) -> None:
    """Every process starts from rank 0's weights."""
    for parameter in model.parameters():
        torch.distributed.broadcast(parameter.data, src=0)


def average_gradients(model: nn.Module, world_size: int) -> None:
    """Mean of every gradient over processes: with each process's loss over its own anchors against the
    gathered candidates, the mean is the gradient of the global batch's loss."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world_size


def mean_over_processes(value: torch.Tensor, world_size: int) -> float:
    """The mean of a scalar tensor over processes, as a float (the value itself on one process)."""
    if world_size > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world_size
    return float(value)


def local_device() -> str:
    """This process's device: cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"
