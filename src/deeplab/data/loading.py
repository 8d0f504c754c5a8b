"""A dataset's samples in batches, read ahead by worker processes (torch's DataLoader) or threads.

Which of the two is the fork rule's call (``deeplab.forks.loader_kind``): threads where a runtime
has made forking this process unsafe. Image decoding releases the GIL, so threads read ahead in
parallel too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from torch.utils.data import DataLoader

from deeplab.forks import loader_kind

PREFETCH = 2  # batches read ahead per worker, as torch's DataLoader does


def batches(dataset: Any, batch_size: int = 1, workers: int = 0) -> Iterator[list]:
    """Lists of ``batch_size`` samples in order; ``workers`` read ahead (processes or threads, as
    ``forks.loader_kind`` says)."""
    if loader_kind(workers) == "processes":
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list)
        return
    starts = iter(range(0, len(dataset), batch_size))
    with ThreadPoolExecutor(workers, thread_name_prefix="loader") as pool:
        ahead: deque[list[Future]] = deque()

        def read_ahead() -> None:
            start = next(starts, None)
            if start is not None:
                ends = range(start, min(start + batch_size, len(dataset)))
                ahead.append([pool.submit(dataset.__getitem__, i) for i in ends])

        for _ in range(PREFETCH * workers):
            read_ahead()
        while ahead:
            batch = [future.result() for future in ahead.popleft()]
            read_ahead()
            yield batch
