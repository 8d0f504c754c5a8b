"""DenseCRF: mean-field inference in the fully connected CRF (Krähenbühl & Koltun 2011).

Semantics are those of Krähenbühl's C++ code as wrapped by pydensecrf, to float32 rounding:
unary U = -log(clip(p, 1e-5)), Q0 = softmax(-U), Potts compatibility, and per iteration
Q = softmax(-U + sum_k w_k * n_k * K_k(n_k * Q)) with n_k = 1/sqrt(K_k 1 + 1e-20) (symmetric
normalisation, the pixel's own contribution kept). K_k are permutohedral-lattice Gaussians over
(x, y)/theta_gamma (weight w2) and (x, y)/theta_alpha, (r, g, b)/theta_beta (weight w1).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import lattice as lat
from ._jit import get_num_threads, jit

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
    Threads: numba's count (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``); one image runs its
    two kernels at once and splits the pixels' update, ``batch`` runs one image per thread.
    """

    def __init__(
        self,
        w1: float = 4.0,
        theta_alpha: float = 67.0,
        theta_beta: float = 3.0,
        w2: float = 3.0,
        theta_gamma: float = 1.0,
        iterations: int = 10,
    ) -> None:
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
        return (
            f"DenseCRF(w1={self.w1:g}, theta_alpha={self.theta_alpha:g}, theta_beta={self.theta_beta:g}, "
            f"w2={self.w2:g}, theta_gamma={self.theta_gamma:g}, iterations={self.iterations})"
        )

    def __call__(self, image: np.ndarray, probs: np.ndarray, from_logits: bool = False) -> np.ndarray:
        """Refine ``probs`` (or logits, with ``from_logits=True``) CxHxW on ``image`` HxWx3."""
        workers = get_num_threads()
        if workers <= 1:
            return self._run(image, probs, from_logits)
        with ThreadPoolExecutor(workers) as pool:
            return self._run(image, probs, from_logits, pool, workers)

    def batch(self, images, probs_list, from_logits: bool = False) -> list[np.ndarray]:
        """Refine several images, one per thread (numba's thread count: ``numba.set_num_threads``)."""
        if len(images) != len(probs_list):
            raise ValueError(f"{len(images)} images but {len(probs_list)} probability maps")
        workers = min(len(images), get_num_threads())
        if workers <= 1:
            return [self._run(image, probs, from_logits) for image, probs in zip(images, probs_list)]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda pair: self._run(*pair, from_logits), zip(images, probs_list)))

    def _run(
        self, image, probs, from_logits: bool, pool: ThreadPoolExecutor | None = None, workers: int = 1
    ) -> np.ndarray:
        """One image; with a pool, its ``workers`` threads share each step."""
        probs = as_probs(probs, from_logits)
        c, h, w = probs.shape
        image = as_rgb(image)
        if image.shape[:2] != (h, w):
            raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} but probs are {c}x{h}x{w} (C x H x W)")
        energy = np.ascontiguousarray(np.log(np.clip(probs.reshape(c, h * w).T, PROB_FLOOR, 1.0)))  # -U, N x C
        q = np.empty_like(energy)
        softmax_update(q, energy, _NO_KERNEL, _NO_KERNEL, 0, h * w, np.empty_like(q))
        if self.iterations:
            mean_field(energy, q, self._kernels(image, pool, workers), self.iterations, pool, workers)
        return np.ascontiguousarray(q.T).reshape(c, h, w)

    def _kernels(self, image: np.ndarray, pool: ThreadPoolExecutor | None, workers: int) -> list[_Kernel]:
        """The Gaussian (w2) and bilateral (w1) kernels, those of non-zero weight, built in three
        steps that the pool shares: vertices, blur neighbours (``workers`` shares each), normalisation."""
        h, w = image.shape[:2]
        ys, xs = np.indices((h, w), dtype=np.float32).reshape(2, -1)
        gamma, alpha, beta = (np.float32(t) for t in (self.theta_gamma, self.theta_alpha, self.theta_beta))
        terms = []
        if self.w2:
            terms.append((self.w2, lambda: np.stack([xs / gamma, ys / gamma], 1)))
        if self.w1:
            rgb = image.reshape(-1, 3).astype(np.float32)
            terms.append((self.w1, lambda: np.concatenate([np.stack([xs / alpha, ys / alpha], 1), rgb / beta], 1)))
        parts = _map(pool, lambda term: lat.vertices(term[1]()), terms)
        found = [lat.neighbour_tasks(part, workers) for part in parts]
        _map(pool, lambda task: task(), [task for _, tasks in found for task in tasks])
        lattices = [lat.Lattice(part.offsets, part.weights, f) for part, (f, _) in zip(parts, found)]
        return _map(pool, lambda pair: make_kernel(*pair), zip(lattices, [weight for weight, _ in terms]))


def _map(pool: ThreadPoolExecutor | None, fn, items) -> list:
    """map on the pool's threads, or in this thread without one."""
    return list(pool.map(fn, items) if pool is not None else map(fn, items))


def make_kernel(lattice: lat.Lattice, weight: float) -> _Kernel:
    """A pairwise term of weight ``weight`` on ``lattice``, normalised symmetrically: n = 1/sqrt(K1)."""
    ones = np.ones((lattice.offsets.shape[0], 1), np.float32)
    norm = np.float32(1.0) / np.sqrt(lat.filter_(lattice, ones)[:, 0] + np.float32(1e-20))
    splat_weights = lattice.weights * norm[:, None]
    slice_weights = lattice.weights * (lattice.alpha * np.float32(weight) * norm)[:, None]
    return _Kernel(lattice, splat_weights, slice_weights)


def mean_field(
    energy: np.ndarray,
    q: np.ndarray,
    kernels: list[_Kernel],
    iterations: int,
    pool: ThreadPoolExecutor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """``iterations`` updates Q = softmax(energy + sum_k w_k n_k K_k(n_k Q)) of ``q`` (N x C) in place.

    With a pool, the kernels' splat and blur run at once, then ``parts`` slices of the update.
    """
    if not kernels:
        return q
    n, c = q.shape
    scratch = [lat.buffers(k.lattice, c) for k in kernels]
    first, last = kernels[0], kernels[-1]
    acc = np.empty_like(q)
    bounds = [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]

    def smooth(i: int) -> np.ndarray:
        kernel, (values, spare) = kernels[i], scratch[i]
        lat.splat(values, kernel.lattice.offsets, kernel.splat_weights, q)
        return lat.blur(values, spare, kernel.lattice.neighbours)

    for _ in range(iterations):
        values = _map(pool, smooth, range(len(kernels)))
        a = (values[0], first.lattice.offsets, first.slice_weights)
        b = (values[-1], last.lattice.offsets, last.slice_weights) if len(kernels) == 2 else _NO_KERNEL
        _map(pool, lambda span: softmax_update(q, energy, a, b, *span, acc), bounds)
    return q


_NO_KERNEL = (np.zeros((1, 1), np.float32), np.zeros((1, 0), np.int32), np.zeros((1, 0), np.float32))


def softmax_update(q: np.ndarray, energy: np.ndarray, a: tuple, b: tuple, lo: int, hi: int, acc: np.ndarray) -> None:
    """q[p] = softmax(energy[p] + slice_a[p] + slice_b[p]) for lo <= p < hi, through ``acc`` (N x C).

    A kernel is (blurred values, offsets, slice weights); _NO_KERNEL adds nothing. The exponential
    is numpy's (vectorised), between two compiled passes.
    """
    _energies(acc, energy, *a, *b, lo, hi)
    np.exp(acc[lo:hi], out=acc[lo:hi])
    _normalise(q, acc, lo, hi)


@jit()
def _energies(acc, energy, values_a, offsets_a, weights_a, values_b, offsets_b, weights_b, lo, hi):  # pragma: no cover
    """acc[p] = energy[p] + slice_a[p] + slice_b[p], minus its maximum, for lo <= p < hi."""
    c = acc.shape[1]
    for p in range(lo, hi):
        row = acc[p]
        row[:] = energy[p]
        for j in range(offsets_a.shape[1]):
            w = weights_a[p, j]
            o = offsets_a[p, j]
            for ch in range(c):
                row[ch] += w * values_a[o, ch]
        for j in range(offsets_b.shape[1]):
            w = weights_b[p, j]
            o = offsets_b[p, j]
            for ch in range(c):
                row[ch] += w * values_b[o, ch]
        row -= row.max()


@jit()
def _normalise(q, acc, lo, hi):  # pragma: no cover - compiled
    """q[p] = acc[p] / sum(acc[p]) for lo <= p < hi."""
    c = acc.shape[1]
    for p in range(lo, hi):
        inv = np.float32(1.0) / acc[p].sum()
        for ch in range(c):
            q[p, ch] = acc[p, ch] * inv


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
        softmax_update(
            out, np.ascontiguousarray(probs.reshape(c, -1).T), _NO_KERNEL, _NO_KERNEL, 0, h * w, np.empty_like(out)
        )
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
            warnings.warn(
                f"image values span {values.min():g}..{values.max():g}, outside 0-255; clipped",
                RuntimeWarning,
                stacklevel=4,
            )
        image = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])
