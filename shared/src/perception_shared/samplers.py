"""Samplers and loaders that make training reproducible and evaluation exact.

* ``ShardedSampler`` (training): the order is a function of (seed, epoch) only, each rank takes every
  ``world_size``-th index of it, padded so that all ranks run the same number of steps (DDP needs that).
  ``set_start`` skips the batches already done, so a run resumed mid-epoch sees the same batches.
* ``SeededDataset``: seeds python, numpy and torch from (seed, epoch, index) before each sample, so
  random augmentation does not depend on which worker loads a sample nor on where a run was resumed.
* ``EvalSampler`` (evaluation): rank r takes indices r, r + W, ... with no padding, so over all ranks
  every sample is seen exactly once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .distributed import get_rank, get_world_size
from .seed import worker_init_fn


class ShardedSampler(Sampler[int]):
    """Training sampler: shuffled per epoch, sharded over ranks, resumable mid-epoch."""

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("ShardedSampler needs at least one sample")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0
        if drop_last:
            self.per_rank = num_samples // self.world_size
        else:
            self.per_rank = math.ceil(num_samples / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` samples of this rank's share of the current epoch."""
        self.start = start

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.per_rank * self.world_size
        if total > len(order):  # pad by wrapping around, as DistributedSampler does
            order = (order * math.ceil(total / len(order)))[:total]
        else:
            order = order[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._rank_indices()[self.start :])

    def __len__(self) -> int:
        return max(self.per_rank - self.start, 0)


class EvalSampler(Sampler[int]):
    """Evaluation sampler: rank r gets indices r, r + W, r + 2W, ...; no sample twice, none lost."""

    def __init__(self, num_samples: int, *, rank: int | None = None, world_size: int | None = None) -> None:
        self.num_samples = num_samples
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample in one epoch (a fixed mixing of the three numbers)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededDataset(Dataset):
    """Wraps a dataset so that sample ``i`` of epoch ``e`` is drawn with RNGs seeded from (seed, e, i).

    Setting the epoch in the main process reaches the workers, since loaders here do not keep workers
    alive between epochs.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        s = sample_seed(self.seed, self.epoch, index)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        return self.dataset[index]


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    num_workers: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A training loader over a ``SeededDataset`` with a ``ShardedSampler``.

    The ``Trainer`` calls ``loader.sampler.set_epoch`` / ``set_start`` and ``loader.dataset.set_epoch``.
    """
    seeded = dataset if isinstance(dataset, SeededDataset) else SeededDataset(dataset, seed)
    sampler = ShardedSampler(len(seeded), shuffle=shuffle, seed=seed, drop_last=drop_last)
    # The loader's own generator: creating an iterator draws worker base seeds from it, and drawing them
    # from the global RNG instead would shift the model's dropout stream differently after a resume.
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        seeded,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
        generator=generator,
    )


def make_eval_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """An evaluation loader: in order, sharded without duplicates over ranks.

    Like the training loader it has its own generator, so evaluating never draws from the global RNG.
    """
    generator = torch.Generator()
    generator.manual_seed(0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EvalSampler(len(dataset)),  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=worker_init_fn,
        generator=generator,
    )


def eval_indices(loader: DataLoader) -> list[int]:
    """The dataset indices this rank's evaluation loader visits, in order."""
    return list(iter(loader.sampler))  # type: ignore[arg-type]
