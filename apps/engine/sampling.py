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

Length bucketing (``lengths`` and ``bucket_steps``) keeps padding small for inputs of varied length
(speech): the shuffled epoch is cut into pools of ``bucket_steps`` optimizer steps, each pool is
sorted by length and cut into steps, and the pool's steps are shuffled again; the order stays a
pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
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
        lengths: each sample's length, for bucketing (with ``bucket_steps``).
        bucket_steps: steps per length-sorted pool; 0 = no bucketing.
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
        lengths: Sequence[int] | None = None,
        bucket_steps: int = 0,
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
        if bucket_steps and (lengths is None or len(lengths) != num_samples):
            raise ValueError("length bucketing needs one length per training sample (a dataset with sample_lengths)")
        self.lengths, self.bucket_steps = (list(lengths) if bucket_steps else None), bucket_steps
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
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        if not self.bucket_steps:
            return order
        pool, step = self.bucket_steps * self.global_batch, self.global_batch
        bucketed: list[int] = []
        for start in range(0, self.steps_per_epoch * step, pool):
            end = min(start + pool, self.steps_per_epoch * step)
            members = sorted(order[start:end], key=self.lengths.__getitem__)
            steps = [members[i : i + step] for i in range(0, len(members), step)]
            for k in torch.randperm(len(steps), generator=generator).tolist():
                bucketed.extend(steps[k])
        return bucketed + order[self.steps_per_epoch * step :]

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
