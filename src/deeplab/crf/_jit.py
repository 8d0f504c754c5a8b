"""Numba settings shared by the CRF kernels: compiled once, cached on disk, GIL released.

The cache goes next to the sources (``__pycache__``); where that folder is read-only (an
installed site-packages), numba falls back to its user-wide cache (``NUMBA_CACHE_DIR`` if set).
"""

from __future__ import annotations

from numba import njit, prange

__all__ = ["jit", "prange"]


def jit(parallel: bool = False):
    """numba.njit with the on-disk cache, nogil and (optionally) prange parallel loops."""
    return njit(cache=True, nogil=True, parallel=parallel, error_model="numpy")
