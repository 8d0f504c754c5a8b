"""The fully connected CRF (Krähenbühl & Koltun 2011) on a permutohedral lattice, in numba."""

from deeplab.crf.dense_crf import DenseCRF

__all__ = ["DenseCRF"]
