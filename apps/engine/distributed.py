"""One process or many: process-group set-up from the torchrun environment, DDP/FSDP wrapping,
and a launcher that re-runs a command under ``torch.distributed.run``.

Under ``torchrun`` (environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) the process group uses NCCL on CUDA and gloo on CPU; without
them everything runs in this process and the collectives below are no-ops.

gloo prints ``[Gloo] Rank N is connected to M peer ranks ...`` from C++ on every process when the
group connects; :func:`init_distributed` sends the process's native stdout to ``/dev/null`` for
that moment only, so a run's output is its own. Errors still reach stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator, Sequence
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
    "under_torchrun",
    "launch_with_torchrun",
    "wrap_model",
]

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_AGENT_LOGS = ("torch.distributed.elastic", "torch.distributed.launcher")  # the launcher's own loggers


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
        with contextlib.nullcontext() if use_cuda else _native_stdout_silenced():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            dist.barrier()  # the gloo mesh is connected (and has printed) by the end of this
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=where)


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 points at /dev/null inside the block; C buffers are flushed on both sides."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside what :func:`wrap_model` returned (DDP keeps it as ``.module``; FSDP2 changes it in place)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


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


def launch_with_torchrun(nproc: int, module_args: Sequence[str], module: str = "polyformer.apps") -> int:
    """Run ``python -m module module_args...`` in ``nproc`` processes on this node and wait.

    The same launch as ``torchrun --standalone --nproc-per-node=nproc`` (torch's elastic agent,
    no restarts), started from this process so that the agent's own report of a failed process
    (a log line and a ``ChildFailedError`` traceback on top of the process's own error message)
    stays out of the output: a process that exits with an error has already said why. A process
    killed by a signal is reported in one line. The caller's own ``--nproc`` option must already
    be removed from ``module_args``.

    Returns:
        0, or the exit status of the first process that failed (128 + N for a signal N).
    """
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if not torch.cuda.is_available():
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0,
    )  # fmt: skip
    agent_logs = [
        logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict) if name.startswith(_AGENT_LOGS)
    ]
    levels = [log.level for log in agent_logs]
    for log in agent_logs:
        log.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", module, *module_args)
    except SignalException as error:  # Ctrl-C or SIGTERM: the agent passed it on to the processes,
        return 128 + int(error.sigval)  # which saved a checkpoint and said how to resume
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        if failure.exitcode < 0:
            print(f"process {rank} of {nproc} was killed by signal {-failure.exitcode}", file=sys.stderr)
            return 128 - failure.exitcode
        return failure.exitcode
    finally:
        for log, level in zip(agent_logs, levels):
            log.setLevel(level)
    return 0
