"""One process or many: process-group set-up from the torchrun environment, DDP/FSDP wrapping,
and a launcher that re-runs a command under ``torch.distributed.run``.

Under ``torchrun`` (environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) the process group uses NCCL on CUDA and gloo on CPU; without
them everything runs in this process and the collectives below are no-ops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistributedContext",
    "all_reduce_sum",
    "gather_objects",
    "init_distributed",
    "shutdown_distributed",
    "torchrun_command",
    "under_torchrun",
    "launch_with_torchrun",
    "wrap_model",
]

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: rank, world size and the device it trains on."""

    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this node (picks the GPU)
    device: torch.device = torch.device("cpu")  # device of the model and batches

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for all processes (no-op on one process)."""
        if self.is_distributed:
            dist.barrier()


def under_torchrun() -> bool:
    """True when this process was started by torchrun (or another launcher setting its variables)."""
    return all(name in os.environ for name in TORCHRUN_ENV) and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group described by the torchrun environment, or run alone.

    Args:
        device: "cpu" or "cuda" to force a device type; None picks CUDA when available.

    Returns:
        The context; calling this again returns the same context without re-initialising.
    """
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if not under_torchrun():
        return DistributedContext(device=torch.device("cuda" if use_cuda else "cpu"))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=where)


def shutdown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistributedContext, fsdp: bool = False) -> nn.Module:
    """The module to call in training: the model itself, DDP around it, or the model sharded by FSDP2.

    FSDP2 (``fully_shard``) shards every direct child that holds parameters, then the root; the
    model object is changed in place, so optimizers must be built after this call.
    """
    model.to(context.device)
    if not context.is_distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for child in model.children():
            if any(p.requires_grad for p in child.parameters()):
                fully_shard(child)
        fully_shard(model)
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(values: Sequence[float], context: DistributedContext) -> list[float]:
    """Sum a few numbers over all processes (returned unchanged on one process)."""
    if not context.is_distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``value`` in rank order, on every process."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def torchrun_command(nproc: int, module_args: Sequence[str], module: str = "polyformer.apps") -> list[str]:
    """The argv that runs ``python -m module module_args...`` in ``nproc`` processes on this node."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", module, *module_args,
    ]


def launch_with_torchrun(nproc: int, module_args: Sequence[str], module: str = "polyformer.apps") -> int:
    """Run ``python -m module module_args...`` under torchrun with ``nproc`` processes and wait.

    The caller's own ``--nproc`` option must already be removed from ``module_args``.

    Returns:
        torchrun's exit status.
    """
    import subprocess

    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    env = dict(os.environ)
    if not torch.cuda.is_available():
        threads = max(1, (os.cpu_count() or 1) // nproc)
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return subprocess.call(torchrun_command(nproc, module_args, module), env=env)
