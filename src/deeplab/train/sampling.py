"""A data order that is a pure function of (seed, iteration): resumable without replaying the loader.

The training stream is the concatenation of one random permutation of the data set per epoch.
Iteration `it` takes the stream positions [it * B, (it + 1) * B) for a global batch B; each process
and accumulation step takes its own slice of them. Every sample is augmented under RNGs seeded from
(seed, position), so the batch of an iteration is the same whatever the number of processes,
DataLoader workers, or restarts. A sample that fails to load travels out of a loader worker as a
SampleFailure holding its one-line error, so the user reads the same message with or without workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate


def mix_seed(*values: int) -> int:
    """A well-mixed 31-bit seed from several integers (seed, purpose, iteration, rank...)."""
    return int(np.random.SeedSequence([abs(int(v)) for v in values]).generate_state(1)[0]) >> 1


def seed_all(seed: int) -> None:
    """Seed python's `random`, numpy's global RNG and torch's CPU (and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under freshly seeded global RNGs, restoring the previous states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SampleFailure(NamedTuple):
    """A sample that could not be loaded: its one-line error, carried out of a loader worker as is."""

    message: str


class SampleStream(Dataset):
    """Samples by stream position: item p is dataset[perm_epoch[p % n]], its ``transform`` drawing
    from a generator seeded by (seed, p); a sample that fails to load becomes a SampleFailure."""

    def __init__(self, dataset: Any, seed: int, transform: Callable | None = None) -> None:
        if len(dataset) == 0:
            raise ValueError("the training set is empty")
        self.dataset = dataset
        self.seed = seed
        self.transform = transform
        self._perm: tuple[int, torch.Tensor] | None = None

    def index(self, position: int) -> int:
        """The data-set index at a stream position."""
        epoch, k = divmod(position, len(self.dataset))
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, 1, epoch))
            self._perm = (epoch, torch.randperm(len(self.dataset), generator=g))
        return int(self._perm[1][k])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> Any:
        index = self.index(position)
        try:
            with seeded(mix_seed(self.seed, 2, position)):  # for code drawing from global RNGs
                sample = self.dataset[index]
                if self.transform is None:
                    return sample
                return self.transform(*sample, rng=np.random.default_rng(mix_seed(self.seed, 4, position)))
        except ValueError as err:  # bad mask values, unreadable files: the data sets' one-line errors
            return SampleFailure(str(err))


def collate(items: list[Any]) -> Any:
    """torch's default collation, or the first SampleFailure of the batch."""
    failure = next((item for item in items if isinstance(item, SampleFailure)), None)
    return failure if failure is not None else default_collate(items)


class IterationBatches(Sampler[list[int]]):
    """This process's micro-batches of stream positions, for iterations start..iterations-1.

    The global batch of an iteration is cut into world_size * accumulate equal micro-batches;
    micro-batch (a * world_size + rank) goes to process `rank` at accumulation step `a`.
    """

    def __init__(
        self, batch_size: int, iterations: int, start: int = 0, accumulate: int = 1, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % (accumulate * world_size):
            raise ValueError(
                f"batch size {batch_size} is not divisible by {world_size} processes x {accumulate} accumulation steps"
            )
        self.batch_size, self.iterations, self.start = batch_size, iterations, start
        self.accumulate, self.rank, self.world_size = accumulate, rank, world_size
        self.micro = batch_size // (accumulate * world_size)

    def __len__(self) -> int:
        return max(self.iterations - self.start, 0) * self.accumulate

    def __iter__(self) -> Iterator[list[int]]:
        for it in range(self.start, self.iterations):
            for a in range(self.accumulate):
                first = it * self.batch_size + (a * self.world_size + self.rank) * self.micro
                yield list(range(first, first + self.micro))
