"""DenseCRF: mean-field inference in the fully connected CRF (Krähenbühl & Koltun 2011).

Semantics are those of Krähenbühl's C++ code as wrapped by pydensecrf, to float32 rounding:
unary U = -log(clip(p, 1e-5)), Q0 = softmax(-U), Potts compatibility, and per iteration
Q = softmax(-U + sum_k w_k * n_k * K_k(n_k * Q)) with n_k = 1/sqrt(K_k 1 + 1e-20) (symmetric
normalisation, the pixel's own contribution kept). K_k are permutohedral-lattice Gaussians over
(x, y)/theta_gamma (weight w2) and (x, y)/theta_alpha, (r, g, b)/theta_beta (weight w1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import lattice as lat
from ._jit import jit, prange

PROB_FLOOR = 1e-5  # pydensecrf's unary_from_softmax clip
SUM_TOLERANCE = 1e-3  # how far a pixel's probabilities may sum from 1


@dataclass(frozen=True)
class _Kernel:
    """One pairwise term, ready for mean field: lattice, splat weights n*b, slice weights w*alpha*n*b."""

    lattice: lat.Lattice
    splat_weights: np.ndarray
    slice_weights: np.ndarray


class DenseCRF:
    """The fully connected CRF with DeepLab v2's VOC defaults.

    ``crf(image, probs)``: image HxWx3 uint8 RGB, probs CxHxW softmax -> refined CxHxW float32.
    Grayscale/RGBA images are converted; non-uint8 images are rounded and clipped to 0-255 (with a
    warning if that changes values). ``iterations=0`` returns Q0 = softmax(log(clip(probs, 1e-5))).
    """

    def __init__(self, w1: float = 4.0, theta_alpha: float = 67.0, theta_beta: float = 3.0,
                 w2: float = 3.0, theta_gamma: float = 1.0, iterations: int = 10) -> None:  # fmt: skip
        for name, value in (("theta_alpha", theta_alpha), ("theta_beta", theta_beta), ("theta_gamma", theta_gamma)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name, value in (("w1", w1), ("w2", w2)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if int(iterations) != iterations or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations}")
        self.w1, self.theta_alpha, self.theta_beta = float(w1), float(theta_alpha), float(theta_beta)
        self.w2, self.theta_gamma, self.iterations = float(w2), float(theta_gamma), int(iterations)

    def __repr__(self) -> str:
        return (f"DenseCRF(w1={self.w1:g}, theta_alpha={self.theta_alpha:g}, theta_beta={self.theta_beta:g}, "
                f"w2={self.w2:g}, theta_gamma={self.theta_gamma:g}, iterations={self.iterations})")  # fmt: skip

    def __call__(self, image: np.ndarray, probs: np.ndarray, from_logits: bool = False) -> np.ndarray:
        """Refine ``probs`` (or logits, with ``from_logits=True``) CxHxW on ``image`` HxWx3."""
        probs = as_probs(probs, from_logits)
        c, h, w = probs.shape
        image = as_rgb(image)
        if image.shape[:2] != (h, w):
            raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} but probs are {c}x{h}x{w} (C x H x W)")
        unary = -np.log(np.clip(probs.reshape(c, h * w).T, np.float32(PROB_FLOOR), np.float32(1.0)))
        q = np.empty_like(unary)
        _softmax(q, -unary)
        kernels = [k for k in self._kernels(image) if k is not None] if self.iterations else []
        q = mean_field(unary, q, kernels, self.iterations)
        return np.ascontiguousarray(q.T).reshape(c, h, w)

    def batch(self, images, probs_list, from_logits: bool = False) -> list[np.ndarray]:
        """Refine several images in turn (each uses every numba thread)."""
        if len(images) != len(probs_list):
            raise ValueError(f"{len(images)} images but {len(probs_list)} probability maps")
        return [self(image, probs, from_logits) for image, probs in zip(images, probs_list)]

    def _kernels(self, image: np.ndarray) -> list[_Kernel | None]:
        h, w = image.shape[:2]
        ys, xs = np.indices((h, w), dtype=np.float32).reshape(2, -1)
        gaussian = bilateral = None
        if self.w2 > 0:
            gamma = np.float32(self.theta_gamma)
            gaussian = make_kernel(np.stack([xs / gamma, ys / gamma], 1), self.w2)
        if self.w1 > 0:
            alpha, beta = np.float32(self.theta_alpha), np.float32(self.theta_beta)
            rgb = image.reshape(-1, 3).astype(np.float32) / beta
            bilateral = make_kernel(np.concatenate([np.stack([xs / alpha, ys / alpha], 1), rgb], 1), self.w1)
        return [gaussian, bilateral]


def make_kernel(features: np.ndarray, weight: float) -> _Kernel:
    """Build the lattice of ``features`` (N x d) and its symmetric normalisation n = 1/sqrt(K1)."""
    lattice = lat.build(features)
    ones = np.ones((features.shape[0], 1), np.float32)
    norm = 1.0 / np.sqrt(lat.filter_(lattice, ones)[:, 0] + np.float32(1e-20))
    splat_weights = lattice.weights * norm[:, None]
    slice_weights = lattice.weights * (lattice.alpha * np.float32(weight) * norm)[:, None]
    return _Kernel(lattice, splat_weights.astype(np.float32), slice_weights.astype(np.float32))


def mean_field(unary: np.ndarray, q: np.ndarray, kernels: list[_Kernel], iterations: int) -> np.ndarray:
    """``iterations`` mean-field updates of Q (N x C) from Q0 ``q``; returns the last Q."""
    if not kernels:
        return q
    c = unary.shape[1]
    shapes = [(k.lattice.num_vertices + 1, c) for k in kernels]
    buffers = [(np.empty(shape, np.float32), np.empty(shape, np.float32)) for shape in shapes]
    energy = -unary
    acc = np.empty_like(unary)
    for _ in range(iterations):
        base = energy
        for i, (kernel, (values, scratch)) in enumerate(zip(kernels, buffers)):
            lattice = kernel.lattice
            lat.splat(values, lattice.starts, lattice.entries, kernel.splat_weights, q)
            lat.blur(values, scratch, lattice.neighbours)
            if i == len(kernels) - 1:
                _slice_softmax(q, base, values, lattice.offsets, kernel.slice_weights)
            else:
                _slice_add(acc, base, values, lattice.offsets, kernel.slice_weights)
                base = acc
    return q


@jit(parallel=True)
def _slice_add(out, base, values, offsets, slice_weights):  # pragma: no cover - compiled
    """out[p] = base[p] + sum_j slice_weights[p, j] * values[offsets[p, j]]."""
    n, d1 = offsets.shape
    c = values.shape[1]
    for p in prange(n):
        acc = base[p].copy()
        for j in range(d1):
            w = slice_weights[p, j]
            o = offsets[p, j]
            for ch in range(c):
                acc[ch] += w * values[o, ch]
        out[p] = acc


@jit(parallel=True)
def _slice_softmax(q, base, values, offsets, slice_weights):  # pragma: no cover - compiled
    """q[p] = softmax(base[p] + sum_j slice_weights[p, j] * values[offsets[p, j]])."""
    n, d1 = offsets.shape
    c = values.shape[1]
    for p in prange(n):
        acc = base[p].copy()
        for j in range(d1):
            w = slice_weights[p, j]
            o = offsets[p, j]
            for ch in range(c):
                acc[ch] += w * values[o, ch]
        _softmax_row(q[p], acc)


@jit()
def _softmax_row(out, x):  # pragma: no cover - compiled
    top = x.max()
    total = np.float32(0.0)
    for ch in range(x.shape[0]):
        e = np.exp(x[ch] - top)
        out[ch] = e
        total += e
    for ch in range(x.shape[0]):
        out[ch] /= total


@jit(parallel=True)
def _softmax(out, x):  # pragma: no cover - compiled
    """Row-wise softmax of x (N x C) into out."""
    for p in prange(x.shape[0]):
        _softmax_row(out[p], x[p])


def as_probs(probs: np.ndarray, from_logits: bool = False) -> np.ndarray:
    """Check CxHxW probabilities (or convert logits with a softmax) -> float32 C-contiguous."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or 0 in probs.shape:
        raise ValueError(f"probs must be C x H x W, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.number):
        raise ValueError(f"probs must be numbers, got dtype {probs.dtype}")
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or infinite values")
    if from_logits:
        c, h, w = probs.shape
        out = np.empty((h * w, c), np.float32)
        _softmax(out, np.ascontiguousarray(probs.reshape(c, -1).T))
        return np.ascontiguousarray(out.T).reshape(c, h, w)
    lowest, sums = probs.min(), probs.sum(0)
    worst = float(np.abs(sums - 1).max())
    if lowest < 0 or worst > SUM_TOLERANCE:
        problem = f"a negative value {lowest:g}" if lowest < 0 else f"sums over classes off 1 by up to {worst:.3g}"
        raise ValueError(f"probs are not probabilities ({problem}); pass logits with `from_logits=True`")
    return probs


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB from gray (HxW, HxWx1), RGBA (alpha dropped) or non-uint8 images (0-255 scale)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
            raise ValueError(f"image must be numbers, got dtype {image.dtype}")
        values = image.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("image contains NaN or infinite values")
        if values.min() < 0 or values.max() > 255:
            warnings.warn(f"image values span {values.min():g}..{values.max():g}, outside 0-255; clipped",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
        image = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])
