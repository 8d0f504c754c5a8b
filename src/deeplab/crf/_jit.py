"""Numba settings shared by the CRF kernels: compiled once, cached on disk, GIL released.

The cache goes next to the sources (``__pycache__``); where that folder is read-only (an
installed site-packages), numba falls back to its user-wide cache (``NUMBA_CACHE_DIR`` if set).
The kernels are serial; the CRF runs them on its own threads, as many as numba's thread count
(``numba.set_num_threads`` or ``NUMBA_NUM_THREADS``).
"""

from __future__ import annotations

from numba import get_num_threads, njit

__all__ = ["get_num_threads", "jit"]


def jit():
    """numba.njit with the on-disk cache and the GIL released."""
    return njit(cache=True, nogil=True, error_model="numpy")
