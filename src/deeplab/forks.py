"""The fork rule: whether this process may still fork, and how loaders read ahead because of it.

Some runtimes start thread pools that cannot be stopped for a ``fork()``: once OpenVINO has compiled
a model in a process, a forked child inherits locked mutexes and threads that do not exist in it,
and the parent crashed later (3 of 8 test runs). A runtime that makes the process fork-unsafe says
so with ``mark_fork_unsafe``; every loader asks ``loader_kind`` (or ``dataloader_context``) and
reads ahead with threads (image decoding releases the GIL) or spawned processes instead of forks.

The first fork of a fork-unsafe process (someone else's: a user's DataLoader, multiprocessing)
warns once. Runtimes register what a forked child must never destroy with ``keep_in_child``: a
child that destroys a compiled model waits forever for threads only the parent has, so the child
holds one extra reference to each such object for its lifetime. That is bounded: only the objects
alive at the fork, in pages shared copy-on-write with the parent, freed when the child exits.
"""

from __future__ import annotations

import ctypes
import os
import warnings
import weakref
from typing import Any, Literal

_unsafe_because: str | None = None  # the runtime that made forking unsafe, if any
_warned = False
_kept: weakref.WeakSet = weakref.WeakSet()  # objects a forked child must never destroy

LoaderKind = Literal["processes", "threads"]


def mark_fork_unsafe(runtime: str) -> None:
    """Record that ``runtime`` (e.g. "OpenVINO") runs threads that make forking this process unsafe."""
    global _unsafe_because
    _unsafe_because = _unsafe_because or runtime


def fork_unsafe() -> str | None:
    """The runtime that made forking unsafe in this process, or None while forks are safe."""
    return _unsafe_because


def keep_in_child(obj: Any) -> None:
    """Never destroy ``obj`` in a forked child (see the module docstring for why that is bounded)."""
    _kept.add(obj)


def loader_kind(workers: int) -> LoaderKind:
    """How ``workers`` loader workers read ahead here: forked processes while that is safe, else threads."""
    return "threads" if workers and fork_unsafe() else "processes"


def dataloader_context() -> str | None:
    """The multiprocessing start method for torch DataLoader workers: the default (fork) while that is
    safe, else "spawn" (for loaders whose samples are drawn in ways threads would slow, as training's)."""
    return "spawn" if fork_unsafe() else None


def _warn_before_fork() -> None:
    global _warned
    if _unsafe_because and not _warned:
        _warned = True
        warnings.warn(
            f"forking a process where {_unsafe_because} has run is unsafe (its threads cannot be stopped for "
            "the fork; crashes follow): start workers with threads or the 'spawn' method",
            RuntimeWarning,
            stacklevel=2,
        )


def _hold_in_child() -> None:
    for obj in list(_kept):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


os.register_at_fork(before=_warn_before_fork, after_in_child=_hold_in_child)
