"""Batches read ahead by processes or threads: the same batches, in order, errors surfaced."""

from __future__ import annotations

import threading

import pytest

from deeplab import forks
from deeplab.data.loading import batches


@pytest.fixture
def fork_unsafe(monkeypatch):
    """This process as if a runtime had made forking it unsafe."""
    monkeypatch.setattr(forks, "_unsafe_because", "a test runtime")


class Numbers:
    def __init__(self, n: int) -> None:
        self.n, self.threads = n, set()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.threads.add(threading.current_thread().name)
        return i * 10


@pytest.mark.parametrize("workers", [0, 2])
def test_threads_give_the_loaders_batches(workers, monkeypatch):
    data = Numbers(7)
    expected = [[0, 10, 20], [30, 40, 50], [60]]
    assert list(batches(data, 3, workers)) == expected
    assert not any(name.startswith("loader") for name in data.threads)  # forked processes, or this thread
    monkeypatch.setattr(forks, "_unsafe_because", "a test runtime")
    assert list(batches(data, 3, workers)) == expected
    if workers:
        assert all(name.startswith("loader") for name in data.threads - {threading.main_thread().name})


def test_a_failing_sample_raises_in_the_consumer(fork_unsafe):
    class Failing(Numbers):
        def __getitem__(self, i):
            if i == 4:
                raise ValueError("sample 4 is broken")
            return super().__getitem__(i)

    got = batches(Failing(6), 2, 2)
    assert next(got) == [0, 10] and next(got) == [20, 30]
    with pytest.raises(ValueError, match="sample 4"):
        next(got)
