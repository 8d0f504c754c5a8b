"""Shared test set-up: tests/ on sys.path (for tests/tv.py and tiny_model.py), one torch thread.

Tiny tensors gain nothing from two threads, and OpenMP threads stall badly when the two cores
are shared with other jobs (CI, a second test process).
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def model_cache(tmp_path_factory):
    """Converted models (OpenVINO's) cached in a folder of this run, not the user's cache."""
    import os

    os.environ["DEEPLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    del os.environ["DEEPLAB_CACHE_DIR"]


@pytest.fixture(autouse=True)
def no_openvino_in_this_process(monkeypatch):
    """backend "auto" means torch here: OpenVINO runs in child processes only (tests/child.py)."""
    from deeplab.inference import openvino

    monkeypatch.setattr(openvino, "openvino_available", lambda: False)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tv():
    """The torchvision module for parity tests; the test is skipped where it cannot be imported."""
    from tv import import_torchvision

    module = import_torchvision()
    if module is None:
        pytest.skip("torchvision cannot be imported")
    return module


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked gpu where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
