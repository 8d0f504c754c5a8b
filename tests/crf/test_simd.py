"""The 8-lane vector helpers against numpy, lane by lane."""

from __future__ import annotations

import numpy as np
from numba import njit

from deeplab.crf._simd import (
    aligned_empty,
    broadcast8,
    first_lanes8,
    floor8,
    hmax8,
    hsum8,
    load8,
    maximum8,
    store8,
    store_fence,
    stream8,
    times_power_of_two8,
)
from deeplab.crf.dense_crf import _exp8


@njit
def _lanewise(a, b, out):
    for i in range(a.shape[0]):
        x, y = load8(a, i, 0), load8(b, i, 0)
        store8(out, i, 0, x + y)
        store8(out, i, 8, x - y * np.float32(2.0))
        store8(out, i, 16, maximum8(x, y))
        store8(out, i, 24, floor8(x * 10.0))
        store8(out, i, 32, times_power_of_two8(x, floor8(y * 4.0)))
        store8(out, i, 40, first_lanes8(x, i))
        store8(out, i, 48, broadcast8(hsum8(x)))
        store8(out, i, 56, broadcast8(hmax8(y)))
        store8(out, i, 64, _exp8(x - np.float32(3.0)))


def test_lanewise_operations_match_numpy():
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-3, 3, (10, 8)).astype(np.float32) for _ in range(2))
    out = np.zeros((10, 72), np.float32)
    _lanewise(a, b, out)
    np.testing.assert_array_equal(out[:, 0:8], a + b)
    np.testing.assert_array_equal(out[:, 8:16], a - b * np.float32(2))
    np.testing.assert_array_equal(out[:, 16:24], np.maximum(a, b))
    np.testing.assert_array_equal(out[:, 24:32], np.floor(a * np.float32(10)))
    np.testing.assert_array_equal(out[:, 32:40], a * np.float32(2) ** np.floor(b * np.float32(4)))
    np.testing.assert_array_equal(out[:, 40:48], np.where(np.arange(8) < np.arange(10)[:, None], a, 0))
    pairs = a[:, :4] + a[:, 4:]  # the documented order: halves, then quarters, then the pair
    np.testing.assert_array_equal(out[:, 48], (pairs[:, 0] + pairs[:, 2]) + (pairs[:, 1] + pairs[:, 3]))
    np.testing.assert_array_equal(out[:, 56], b.max(1))
    exact = np.exp((a - np.float32(3)).astype(np.float64))
    np.testing.assert_allclose(out[:, 64:72], exact, rtol=3e-7)  # Cephes' expf: within 2 ulp


@njit
def _stream(src, dst):
    for i in range(src.shape[0]):
        for col in range(0, src.shape[1], 8):
            stream8(dst, i, col, load8(src, i, col))
    store_fence()


def test_streaming_stores_write_what_plain_stores_write():
    src = np.random.default_rng(1).random((33, 24), dtype=np.float32)
    dst = aligned_empty((33, 24))
    assert dst.ctypes.data % 64 == 0 and dst.shape == (33, 24) and dst.dtype == np.float32
    _stream(src, dst)
    np.testing.assert_array_equal(dst, src)
