"""The fork rule: loaders fork while that is safe, and read with threads (or spawn) once it is not."""

from __future__ import annotations

import os
import warnings

import pytest

from deeplab import forks


def test_forks_are_safe_until_a_runtime_says_otherwise(monkeypatch):
    monkeypatch.setattr(forks, "_unsafe_because", None)
    assert forks.fork_unsafe() is None
    assert forks.loader_kind(2) == "processes" and forks.dataloader_context() is None
    forks.mark_fork_unsafe("OpenVINO")
    forks.mark_fork_unsafe("another")  # the first one named stays the reason
    assert forks.fork_unsafe() == "OpenVINO"
    assert forks.loader_kind(2) == "threads" and forks.dataloader_context() == "spawn"
    assert forks.loader_kind(0) == "processes"  # no workers: nothing forks


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_the_first_fork_of_an_unsafe_process_warns_once(monkeypatch):
    monkeypatch.setattr(forks, "_unsafe_because", "OpenVINO")
    monkeypatch.setattr(forks, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "OpenVINO" in messages[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_kept_object_survives_in_a_forked_child(monkeypatch):
    import sys

    class Held:
        pass

    held = Held()
    forks.keep_in_child(held)
    before = sys.getrefcount(held)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, str(sys.getrefcount(held)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert int(os.read(read, 32)) == before + 1  # the child holds one more reference: never destroyed there
