"""Model tests: tests/ on sys.path for the torchvision helper (tests/tv.py); one intra-op thread,
since tiny tensors gain nothing from two and OpenMP threads stall when the cores are shared."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
