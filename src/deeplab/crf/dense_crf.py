"""DenseCRF: mean-field inference in the fully connected CRF (Krähenbühl & Koltun 2011).

Semantics are those of Krähenbühl's C++ code as wrapped by pydensecrf, to float32 rounding:
unary U = -log(clip(p, 1e-5)), Q0 = softmax(-U), Potts compatibility, and per iteration
Q = softmax(-U + sum_k w_k * n_k * K_k(n_k * Q)) with n_k = 1/sqrt(K_k 1 + 1e-20) (symmetric
normalisation, the pixel's own contribution kept). K_k are permutohedral-lattice Gaussians over
(x, y)/theta_gamma (weight w2) and (x, y)/theta_alpha, (r, g, b)/theta_beta (weight w1).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deeplab.imageio import as_rgb

from . import lattice as lat
from ._jit import PREFETCH_AHEAD, get_num_threads, jit, prefetch
from ._simd import LANES, broadcast8, first_lanes8, floor8, hmax8, hsum8, load8, maximum8, store8, times_power_of_two8

PROB_FLOOR = 1e-5  # pydensecrf's unary_from_softmax clip
SUM_TOLERANCE = 1e-3  # how far a pixel's probabilities may sum from 1
WHOLE_IMAGE_PIXELS = 2048 * 1024  # larger images are refined in overlapping windows (bounded memory)
UNARY_BLOCK = 256  # points per block of the unary's vectorised log
UPDATE_BLOCK = 32  # points per block of the mean-field update's passes


@dataclass(frozen=True)
class _Kernel:
    """One pairwise term, ready for mean field: lattice, splat weights n*b, slice weights w*alpha*n*b."""

    lattice: lat.Lattice
    splat_weights: np.ndarray
    slice_weights: np.ndarray


class DenseCRF:
    """The fully connected CRF with DeepLab v2's VOC defaults.

    ``crf(image, probs)``: image HxWx3 RGB (anything ``imageio.as_rgb`` takes), probs CxHxW softmax
    -> refined CxHxW float32; ``from_logits=True`` takes logits, ``out=probs`` refines in place.
    Threads: numba's count (``numba.set_num_threads``, ``deeplab ... --threads``); one image shares
    every step among them, ``batch`` runs one image per thread.

    Args:
        w1, theta_alpha, theta_beta: the bilateral (appearance) kernel's weight, position scale
            (pixels) and colour scale (v2 Eq. 3); pydensecrf's ``addPairwiseBilateral(sxy, srgb, compat)``.
        w2, theta_gamma: the Gaussian (smoothness) kernel's weight and position scale.
        iterations: mean-field iterations; 0 returns Q0 = softmax(log(clip(probs, 1e-5))).
        window: images above WHOLE_IMAGE_PIXELS are refined in windows of this many pixels a side,
            so the working memory depends on the window and the image width, not its height;
            None refines every image whole.
        margin: context pixels around each window (default 3 theta_alpha, the bilateral kernel's reach).
    """

    def __init__(
        self,
        w1: float = 4.0,
        theta_alpha: float = 67.0,
        theta_beta: float = 3.0,
        w2: float = 3.0,
        theta_gamma: float = 1.0,
        iterations: int = 10,
        window: int | None = 768,
        margin: int | None = None,
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
        self.margin = int(margin if margin is not None else np.ceil(3 * self.theta_alpha))
        if window is not None and not (int(window) == window and self.margin <= window):
            raise ValueError(f"window must be an integer at least the margin ({self.margin}), got {window}")
        if self.margin < 0:
            raise ValueError(f"margin must be non-negative, got {margin}")
        self.window = None if window is None else int(window)

    def __repr__(self) -> str:
        return (
            f"DenseCRF(w1={self.w1:g}, theta_alpha={self.theta_alpha:g}, theta_beta={self.theta_beta:g}, "
            f"w2={self.w2:g}, theta_gamma={self.theta_gamma:g}, iterations={self.iterations}, "
            f"window={self.window}, margin={self.margin})"
        )

    def __call__(
        self, image: np.ndarray, probs: np.ndarray, from_logits: bool = False, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Refine ``probs`` (or logits, with ``from_logits=True``) CxHxW on ``image`` HxWx3.

        ``out``: a float32 CxHxW array for the result, which may be ``probs`` itself (refined in
        place: with windows, a big image then needs no second copy of its probabilities).
        """
        workers = get_num_threads()
        if workers <= 1:
            return self._refine(image, probs, from_logits, out)
        with ThreadPoolExecutor(workers) as pool:
            return self._refine(image, probs, from_logits, out, lambda fn, items: list(pool.map(fn, items)), workers)

    def batch(self, images, probs_list, from_logits: bool = False, out: list | None = None) -> list[np.ndarray]:
        """Refine several images, one per thread (numba's thread count: ``numba.set_num_threads``);
        ``out``: a list of arrays for the results, as in ``__call__``."""
        if len(images) != len(probs_list):
            raise ValueError(f"{len(images)} images but {len(probs_list)} probability maps")
        if out is not None and len(out) != len(images):
            raise ValueError(f"{len(images)} images but {len(out)} arrays in out")
        outs = out if out is not None else [None] * len(images)
        jobs = list(zip(images, probs_list, outs))
        if len(jobs) == 1:  # one image: its steps shared by the threads
            return [self(*jobs[0][:2], from_logits, jobs[0][2])]
        workers = min(len(images), get_num_threads())
        if workers <= 1:
            return [self._refine(image, probs, from_logits, where) for image, probs, where in jobs]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda job: self._refine(job[0], job[1], from_logits, job[2]), jobs))

    def _refine(self, image, probs, from_logits: bool, out, run=lat.serial, parts: int = 1) -> np.ndarray:
        """One image, whole or in windows, into ``out`` (a new array if None)."""
        probs = np.asarray(probs)
        if probs.ndim == 3 and out is not None and not _fits(out, probs.shape):
            raise ValueError(
                f"out must be a C-contiguous float32 array of the probabilities' shape {probs.shape}, "
                f"got {out.dtype} {out.shape}"
            )
        if self.window is None or probs.ndim != 3 or probs.shape[1] * probs.shape[2] <= WHOLE_IMAGE_PIXELS:
            return self._run(image, probs, from_logits, run, parts, out=out)
        return self._windowed(np.ascontiguousarray(as_rgb(image, stacklevel=3)), probs, from_logits, out, run, parts)

    def _windowed(self, image, probs, from_logits: bool, out, run, parts: int) -> np.ndarray:
        """Refine window by window, the margins giving context; ``out`` may be ``probs``.

        Originals that later windows still read as context (the bottom margin rows of each window,
        its right margin columns) are kept aside before the window's core is written.
        """
        c, h, w = probs.shape
        if image.shape[:2] != (h, w):
            raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} but probs are {c}x{h}x{w} (C x H x W)")
        for top in range(0, h, 256):  # check everything before writing anything
            as_probs(probs[:, top : top + 256], from_logits)
        out = np.empty((c, h, w), np.float32) if out is None else out
        size, m = self.window, self.margin
        assert size is not None and m is not None  # windows() is only called with both set
        above = np.empty((c, m, w), np.float32)  # original rows y0-m..y0 of the band being refined
        for y0 in range(0, h, size):
            y1 = min(y0 + size, h)
            below = np.array(probs[:, max(y1 - m, y0) : y1], np.float32)  # the next band's top context
            left = None  # original columns x0-m..x0, rows y0..y1, of the window to the left
            for x0 in range(0, w, size):
                x1 = min(x0 + size, w)
                top, bottom, first, last = max(y0 - m, 0), min(y1 + m, h), max(x0 - m, 0), min(x1 + m, w)
                crop = np.array(probs[:, top:bottom, first:last], np.float32)
                crop[:, : y0 - top] = above[:, m - (y0 - top) :, first:last]
                if left is not None:
                    crop[:, y0 - top : y1 - top, : x0 - first] = left[:, :, left.shape[2] - (x0 - first) :]
                left = np.array(probs[:, y0:y1, max(x1 - m, x0) : x1], np.float32)
                window = image[top:bottom, first:last]
                refined = self._run(window, crop, from_logits, run, parts, (top, first), out=crop)  # in place
                out[:, y0:y1, x0:x1] = refined[:, y0 - top : y1 - top, x0 - first : x1 - first]
            above[:, m - below.shape[1] :] = below
        return out

    def _run(
        self, image, probs, from_logits: bool, run=lat.serial, parts: int = 1, origin=(0, 0), out=None
    ) -> np.ndarray:
        """One image into ``out`` (new if None); ``run(fn, items)`` (a thread pool's map, waited for)
        shares each step in ``parts``; ``origin``: where the image lies in a bigger one."""
        probs = as_probs(probs, from_logits, check=False)
        c, h, w = probs.shape
        image = np.ascontiguousarray(as_rgb(image, stacklevel=3))
        if image.shape[:2] != (h, w):
            raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} but probs are {c}x{h}x{w} (C x H x W)")
        point_spans = lat.spans(h * w, parts)
        energy = np.empty((h * w, -(-c // LANES) * LANES), np.float32)
        found = run(lambda span: _unary(probs.reshape(c, h * w), energy, *span), point_spans)
        _check_probabilities(min(f[0] for f in found), max(f[1] for f in found), all(f[2] for f in found))
        q = np.empty_like(energy)
        run(lambda span: softmax_update(q, energy, _NO_KERNEL, _NO_KERNEL, c, *span), point_spans)
        if self.iterations:
            kernels = self._kernels(image, run, parts, origin)
            mean_field(energy, q, c, kernels, self.iterations, run, parts)
        out = np.empty((c, h, w), np.float32) if out is None else out
        run(lambda span: _by_class(q, out.reshape(c, h * w), *span), point_spans)
        return out

    def _kernels(self, image: np.ndarray, run, parts: int, origin=(0, 0)) -> list[_Kernel]:
        """The Gaussian (w2) and bilateral (w1) kernels, those of non-zero weight."""
        h, w = image.shape[:2]
        ys, xs = np.indices((h, w), dtype=np.float32).reshape(2, -1)
        ys, xs = ys + np.float32(origin[0]), xs + np.float32(origin[1])  # a window's place in the image
        gamma, alpha, beta = (np.float32(t) for t in (self.theta_gamma, self.theta_alpha, self.theta_beta))
        terms = []
        if self.w2:
            terms.append((self.w2, np.stack([xs / gamma, ys / gamma], 1)))
        if self.w1:
            rgb = image.reshape(-1, 3).astype(np.float32)
            terms.append((self.w1, np.concatenate([np.stack([xs / alpha, ys / alpha], 1), rgb / beta], 1)))
        lattices = lat.build_many([features for _, features in terms], run, parts)
        return run(lambda k: make_kernel(lattices[k], terms[k][0]), range(len(terms)))  # normalisations at once


def _fits(out: np.ndarray, shape: tuple) -> bool:
    """Whether ``out`` can take refined probabilities of this shape in place."""
    return out.shape == shape and out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable


@jit()
def _unary(probs, energy, lo, hi):  # pragma: no cover - compiled
    """energy[p] = -U = log(clip(probs[:, p], 1e-5, 1)) for lo <= p < hi (C x N in, N x C' out), the
    padded classes -inf; returns what as_probs checks: the smallest value, the largest |sum - 1|,
    whether all are finite. Blocks of UNARY_BLOCK points, one class at a time: the log vectorises."""
    c, width = probs.shape[0], energy.shape[1]
    floor, one = np.float32(PROB_FLOOR), np.float32(1.0)
    lowest, worst, finite = np.inf, 0.0, True
    clipped = np.empty(UNARY_BLOCK, np.float32)
    logs = np.empty(UNARY_BLOCK, np.float32)
    mantissas = np.empty(UNARY_BLOCK, np.int32)
    exponents = np.empty(UNARY_BLOCK, np.float32)
    totals = np.empty(UNARY_BLOCK, np.float64)  # NaN or infinite where a value is
    lows = np.empty(UNARY_BLOCK, np.float32)
    for start in range(lo, hi, UNARY_BLOCK):
        n = min(UNARY_BLOCK, hi - start)
        totals[:n] = 0.0
        lows[:n] = np.inf
        for ch in range(c):
            row = probs[ch, start : start + n]
            for i in range(n):  # element by element, no reduction: the loop vectorises
                x = row[i]
                lows[i] = min(lows[i], x)
                totals[i] += x
                clipped[i] = min(max(x, floor), one)
            _log(clipped, logs, n, mantissas, exponents)
            for i in range(n):
                energy[start + i, ch] = logs[i]
        for i in range(n):
            finite &= np.isfinite(totals[i])
            lowest = min(lowest, lows[i])
            worst = max(worst, abs(totals[i] - 1.0))
            for ch in range(c, width):
                energy[start + i, ch] = -np.inf
    return lowest, worst, finite


@jit()
def _log(x, out, n, mantissas, exponents):  # pragma: no cover - compiled
    """out[:n] = log(x[:n]) for positive normal float32: Cephes' logf, in loops that vectorise
    (``mantissas``, ``exponents``: scratch of n, the first loop splits x = m * 2**e, m in [0.5, 1))."""
    bits = x.view(np.int32)
    for i in range(n):
        exponents[i] = np.float32((bits[i] >> 23) - 126)
        mantissas[i] = (bits[i] & 0x007FFFFF) | 0x3F000000
    ms = mantissas.view(np.float32)
    for i in range(n):
        m, e = ms[i], exponents[i]
        small = m < np.float32(0.707106781186547524)
        e = e - np.float32(1.0) if small else e
        m = (m + m if small else m) - np.float32(1.0)
        z = m * m
        y = np.float32(7.0376836292e-2)
        y = y * m - np.float32(1.1514610310e-1)
        y = y * m + np.float32(1.1676998740e-1)
        y = y * m - np.float32(1.2420140846e-1)
        y = y * m + np.float32(1.4249322787e-1)
        y = y * m - np.float32(1.6668057665e-1)
        y = y * m + np.float32(2.0000714765e-1)
        y = y * m - np.float32(2.4999993993e-1)
        y = y * m + np.float32(3.3333331174e-1)
        y = y * m * z + e * np.float32(-2.12194440e-4) - np.float32(0.5) * z
        out[i] = m + y + e * np.float32(0.693359375)


@jit()
def _by_class(q, out, lo, hi):  # pragma: no cover - compiled
    """out[:, p] = q[p, :C] for lo <= p < hi: back from N x C' to C x N."""
    for p in range(lo, hi):
        for ch in range(out.shape[0]):
            out[ch, p] = q[p, ch]


def make_kernel(lattice: lat.Lattice, weight: float) -> _Kernel:
    """A pairwise term of weight ``weight`` on ``lattice``, normalised symmetrically: n = 1/sqrt(K1)."""
    ones = np.ones((lattice.offsets.shape[0], 1), np.float32)
    norm = np.float32(1.0) / np.sqrt(lat.filter_(lattice, ones)[:, 0] + np.float32(1e-20))
    splat_weights = lattice.weights * norm[:, None]
    slice_weights = lattice.weights * (lattice.alpha * np.float32(weight) * norm)[:, None]
    return _Kernel(lattice, splat_weights, slice_weights)


def mean_field(
    energy: np.ndarray, q: np.ndarray, c: int, kernels: list[_Kernel], iterations: int, run=lat.serial, parts: int = 1
) -> np.ndarray:
    """``iterations`` updates Q = softmax(energy + sum_k w_k n_k K_k(n_k Q)) of ``q`` (N x C') in place.

    Every step is split in ``parts`` that ``run`` maps over: the splat by point ranges (each part
    into a buffer of its own, then the buffers summed by vertex ranges), each blur direction by
    vertex ranges, the slice + softmax by point ranges. Vertices are numbered in the order points
    first touch them, so each part's points touch a narrow range of vertices: a part's own buffer
    holds only that range, which is all that is cleared and summed.
    """
    if not kernels:
        return q
    buffers = [lat.buffers(k.lattice, q.shape[1]) for k in kernels]
    vertex_spans = [lat.spans(k.lattice.num_vertices, parts) for k in kernels]
    point_spans = lat.spans(len(q), parts)
    directions = max(len(k.lattice.neighbours) for k in kernels)

    touched = [[_touched(k.lattice.offsets[lo:hi]) for lo, hi in point_spans] for k in kernels]
    private = [  # part 0 splats into the shared buffer, the others into rows of their own
        [pair[0][ranges[0][0] :]] + [np.empty((last - first, q.shape[1]), np.float32) for first, last in ranges[1:]]
        for pair, ranges in zip(buffers, touched)
    ]

    def splat(part: int) -> None:
        for kernel, own, ranges in zip(kernels, private, touched):
            lat.splat(own[part], kernel.lattice.offsets, kernel.splat_weights, q, *point_spans[part], *ranges[part])

    def add(part: int) -> None:
        for pair, own, span, ranges in zip(buffers, private, vertex_spans, touched):
            lo, hi = span[part]
            (first, last), target = ranges[0], pair[0]
            target[lo : min(hi, first)] = 0.0  # rows that part 0 did not write
            target[max(lo, last) : hi] = 0.0
            for other, (first, last) in zip(own[1:], ranges[1:]):
                lat.add_rows(target, other, max(lo, first), min(hi, last), first)

    def blur(j: int, part: int) -> None:
        for kernel, pair, span in zip(kernels, buffers, vertex_spans):
            if j < len(kernel.lattice.neighbours):
                dst = pair[(j + 1) % 2]
                lat.blur_step(dst, pair[j % 2], kernel.lattice.neighbours, j, *span[part], lat.streams(dst))

    results = [lat.blurred(*pair, k.lattice) for k, pair in zip(kernels, buffers)]
    terms = [(values, k.lattice.offsets, k.slice_weights) for values, k in zip(results, kernels)]
    a, b = terms[0], terms[1] if len(terms) == 2 else _NO_KERNEL
    for _ in range(iterations):
        run(splat, range(parts))
        if parts > 1:
            run(add, range(parts))
        for j in range(directions):
            run(lambda part, j=j: blur(j, part), range(parts))
        run(lambda span: softmax_update(q, energy, a, b, c, *span), point_spans)
    return q


def _touched(offsets: np.ndarray) -> tuple[int, int]:
    """The range first <= v < last of the vertices that these points' corners touch."""
    return (int(offsets.min()), int(offsets.max()) + 1) if offsets.size else (0, 0)


_NO_KERNEL = (np.zeros((1, LANES), np.float32), np.zeros((1, 0), np.int32), np.zeros((1, 0), np.float32))


def softmax_update(q: np.ndarray, energy: np.ndarray, a: tuple, b: tuple, c: int, lo: int, hi: int) -> None:
    """q[p] = softmax(energy[p] + slice_a[p] + slice_b[p]) over the first c classes, lo <= p < hi.

    A kernel is (blurred values, offsets, slice weights); _NO_KERNEL adds nothing. Rows are a
    multiple of LANES wide; padded classes (c and on) get q = 0.
    """
    _update(q, energy, *a, *b, c, lo, hi)


@jit()
def _update(q, energy, values_a, offsets_a, weights_a, values_b, offsets_b, weights_b, c, lo, hi):  # pragma: no cover
    """The compiled body of softmax_update, 8 classes at a time, in blocks of UPDATE_BLOCK points:
    sums and maxima, then exps, then the normalisation (each pass's points are independent, so
    the CPU overlaps them; one point's chain max -> exp -> sum -> divide would wait on latency)."""
    width = q.shape[1]
    scratch = np.empty(UPDATE_BLOCK, np.float32)  # each point's largest value, then 1 / its sum
    for start in range(lo, hi, UPDATE_BLOCK):
        stop = min(start + UPDATE_BLOCK, hi)
        for p in range(start, stop):
            if p + PREFETCH_AHEAD < hi:
                for j in range(offsets_a.shape[1]):
                    prefetch(values_a, offsets_a[p + PREFETCH_AHEAD, j])
                for j in range(offsets_b.shape[1]):
                    prefetch(values_b, offsets_b[p + PREFETCH_AHEAD, j])
            top = broadcast8(-np.inf)
            for col in range(0, width, LANES):
                total = load8(energy, p, col)
                for j in range(offsets_a.shape[1]):
                    total = total + weights_a[p, j] * load8(values_a, offsets_a[p, j], col)
                for j in range(offsets_b.shape[1]):
                    total = total + weights_b[p, j] * load8(values_b, offsets_b[p, j], col)
                store8(q, p, col, total)
                top = maximum8(top, total)
            scratch[p - start] = hmax8(top)
        for p in range(start, stop):
            largest, sums = scratch[p - start], broadcast8(0.0)
            for col in range(0, width, LANES):
                e = first_lanes8(_exp8(load8(q, p, col) - largest), c - col)  # padded classes: 0
                store8(q, p, col, e)
                sums = sums + e
            scratch[p - start] = np.float32(1.0) / hsum8(sums)
        for p in range(start, stop):
            inv = scratch[p - start]
            for col in range(0, width, LANES):
                store8(q, p, col, load8(q, p, col) * inv)


@jit()
def _exp8(x):  # pragma: no cover - compiled
    """exp(x) lane by lane for x <= 0: Cephes' expf (e^r * 2**n). Below -87 (exp < 1.7e-38, a class
    with no chance) it returns exp(-87)."""
    x = maximum8(x, broadcast8(-87.0))
    n = floor8(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = r * np.float32(1.9875691500e-4) + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    return times_power_of_two8(p * r * r + r + np.float32(1.0), n)


def as_probs(probs: np.ndarray, from_logits: bool = False, check: bool = True) -> np.ndarray:
    """Check CxHxW probabilities (or convert logits with a softmax) -> float32 C-contiguous.

    ``check=False`` leaves the values' checks to the caller (the CRF does them in its first pass).
    """
    probs = np.asarray(probs)
    if probs.ndim != 3 or 0 in probs.shape:
        raise ValueError(f"probs must be C x H x W, got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.number):
        raise ValueError(f"probs must be numbers, got dtype {probs.dtype}")
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    if from_logits:
        if not np.isfinite(probs).all():
            raise ValueError("probs contain NaN or infinite values")
        c, h, w = probs.shape
        logits = np.full((h * w, -(-c // LANES) * LANES), -np.inf, np.float32)  # whole vectors per row
        logits[:, :c] = probs.reshape(c, -1).T
        out = np.empty_like(logits)
        softmax_update(out, logits, _NO_KERNEL, _NO_KERNEL, c, 0, h * w)
        return np.ascontiguousarray(out[:, :c].T).reshape(c, h, w)
    if check:
        finite = bool(np.isfinite(probs).all())
        lowest = probs.min() if finite else 0.0
        _check_probabilities(lowest, float(np.abs(probs.sum(0) - 1).max()) if finite else 0.0, finite)
    return probs


def _check_probabilities(lowest: float, worst: float, finite: bool) -> None:
    """The errors for values that are not probabilities (from the smallest value, the largest
    |sum over classes - 1|, and whether all are finite)."""
    if not finite:
        raise ValueError("probs contain NaN or infinite values")
    if lowest < 0 or worst > SUM_TOLERANCE:
        problem = f"a negative value {lowest:g}" if lowest < 0 else f"sums over classes off 1 by up to {worst:.3g}"
        raise ValueError(f"probs are not probabilities ({problem}); pass logits with `from_logits=True`")
