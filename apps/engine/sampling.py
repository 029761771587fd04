"""Data order that can be resumed exactly and split across processes.

One epoch is a seeded permutation of the training set, cut into optimizer steps of
``global_batch`` samples (the remainder is dropped). Within a step the samples are cut into
micro-batches of ``global_batch / (world_size * grad_accum)``; micro-batch ``m * world_size + r``
goes to rank ``r`` as its ``m``-th accumulation step. So every optimizer step sees the same
samples whatever the number of processes or accumulation steps, and the position
``(epoch, step)`` is all a checkpoint needs to continue.

Random augmentation is made reproducible the same way: :class:`ReproducibleSamples` seeds the
global generators from ``(seed, epoch, index)`` around each ``dataset[index]`` call, so a
sample gets the same crop in a resumed run, in a DataLoader worker, or on another rank.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .randomness import sample_seed

__all__ = ["ReproducibleSamples", "ResumableBatchSampler", "seeded_global_generators"]


class ResumableBatchSampler(Sampler[list]):
    """Micro-batches of sample keys for one rank, from a seeded per-epoch shuffle.

    Args:
        num_samples: size of the training set.
        global_batch: samples per optimizer step over all ranks and accumulation steps.
        grad_accum: micro-batches per optimizer step on each rank.
        rank: this process's rank.
        world_size: number of processes.
        seed: seed of the shuffles (epoch ``e`` uses ``seed`` and ``e``).
        shuffle: False keeps the dataset order (for tests and debugging).
        keys_with_epoch: yield ``(epoch, index)`` pairs (for :class:`ReproducibleSamples`) instead of indices.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        grad_accum: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        keys_with_epoch: bool = False,
    ):
        if global_batch % (world_size * grad_accum):
            raise ValueError(
                f"batch_size={global_batch} must be divisible by processes x grad_accum = {world_size} x {grad_accum}"
            )
        if num_samples < global_batch:
            raise ValueError(
                f"the training data has {num_samples} samples, fewer than one batch of {global_batch}; lower batch_size"
            )
        self.num_samples, self.global_batch, self.grad_accum = num_samples, global_batch, grad_accum
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.keys_with_epoch = keys_with_epoch
        self.micro_batch = global_batch // (world_size * grad_accum)
        self.steps_per_epoch = num_samples // global_batch
        self.epoch, self.step = 0, 0

    def set_position(self, epoch: int, step: int) -> None:
        """Start the next iteration at optimizer step ``step`` of epoch ``epoch``."""
        if not 0 <= step <= self.steps_per_epoch:
            raise ValueError(f"step {step} is outside an epoch of {self.steps_per_epoch} steps")
        self.epoch, self.step = epoch, step

    def epoch_order(self, epoch: int) -> list[int]:
        """The sample order of one epoch (the same on every rank)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[list]:
        order, epoch, b = self.epoch_order(self.epoch), self.epoch, self.micro_batch
        for step in range(self.step, self.steps_per_epoch):
            base = step * self.global_batch
            for micro in range(self.grad_accum):
                start = base + (micro * self.world_size + self.rank) * b
                chunk = order[start : start + b]
                yield [(epoch, i) for i in chunk] if self.keys_with_epoch else chunk

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.step) * self.grad_accum

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_position(int(state["epoch"]), int(state["step"]))


def _seed_global_generators(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # CPU only: much cheaper than torch.manual_seed


@contextmanager
def seeded_global_generators(seed: int):
    """Seed Python, NumPy and torch's CPU generator for a block, then put their states back."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    _seed_global_generators(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


class ReproducibleSamples(Dataset):
    """Wraps a dataset so that random transforms depend only on ``(seed, epoch, index)``.

    Indexed with the ``(epoch, index)`` keys of a :class:`ResumableBatchSampler` built with
    ``keys_with_epoch=True``. The global generators are saved once per batch (``__getitems__``,
    which the DataLoader calls), re-seeded per sample, and put back afterwards.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        samples = []
        with seeded_global_generators(self.seed):
            for epoch, index in keys:
                _seed_global_generators(sample_seed(self.seed, epoch, index))
                samples.append(self.dataset[index])
        return samples
