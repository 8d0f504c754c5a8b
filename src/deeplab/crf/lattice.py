"""The permutohedral lattice (Adams, Baek & Davis 2010), as in Krähenbühl's dense CRF code.

Each d-dimensional feature vector is elevated to d+1 dimensions, its enclosing simplex found by
rounding and sorting, and its d+1 vertices (barycentric weights) looked up in a hash table.
Filtering = splat onto the vertices, blur with [1 2 1]/2 along each of the d+1 lattice
directions in turn, slice back with the same weights times alpha = 1/(1+2^-d). All arithmetic is
float32, like the C++ code, so the result matches pydensecrf to rounding.

The kernels release the GIL (numba nogil, cached on disk) and each does a range of points or of
vertices, so that the CRF's own threads can share every step: each thread splats its points
into a buffer of its own (then the buffers are summed by vertex ranges), the blur goes one
direction at a time over vertex ranges, the slice over point ranges. Rows of values go 8
float32 lanes at a time (``_simd``): buffers are a multiple of LANES wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._jit import PREFETCH_AHEAD, jit, prefetch
from ._simd import LANES, broadcast8, load8, store8


@dataclass(frozen=True)
class Lattice:
    """A built lattice over N points with d features and M vertices."""

    offsets: np.ndarray  # (N, d+1) int32: the vertex of each corner of the point's simplex
    weights: np.ndarray  # (N, d+1) float32: the barycentric weights of those corners
    neighbours: np.ndarray  # (d+1, M, 2) int32: blur neighbours along each direction; M = none

    @property
    def num_vertices(self) -> int:
        """M, the number of lattice vertices that some point touches."""
        return self.neighbours.shape[1]

    @property
    def alpha(self) -> np.float32:
        """Krähenbühl's slice scale 1/(1+2^-d)."""
        d = self.offsets.shape[1] - 1
        return np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-d))


def serial(fn, items) -> list:
    """Run ``fn`` over ``items`` in this thread: the default runner of the parallel steps."""
    return [fn(item) for item in items]


def spans(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive (lo, hi) ranges that cover range(total)."""
    return [(i * total // parts, (i + 1) * total // parts) for i in range(parts)]


KEY_LIMIT = 32000  # lattice coordinates are int16, as in the C++ code


def scale_factors(d: int) -> np.ndarray:
    """The diagonal of E (Adams et al. p.5) times the expected std sqrt(2/3)(d+1), in float32."""
    inv_std_dev = float(np.float32(math.sqrt(2.0 / 3.0) * (d + 1)))
    return np.array([1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)], np.float32)


def build(features: np.ndarray, run=serial, parts: int = 1) -> Lattice:
    """Build the lattice of ``features`` (N x d, already divided by the kernel's thetas)."""
    return build_many([features], run, parts)[0]


def build_many(features: list[np.ndarray], run=serial, parts: int = 1) -> list[Lattice]:
    """Build the lattices of several feature sets at once, step by step.

    ``run(fn, items)`` maps over items (a thread pool's map shares the work): the simplices and the
    neighbours of every lattice are found in ``parts`` shares of its points and vertices, and the
    hash tables, serial, are filled side by side (one per thread). Measured on the VOC photo with
    DeepLab v2's parameters, 2 threads: 483 ms one lattice per thread, 342 ms every step shared
    with the inserts in turn; this overlaps the inserts as well.
    """
    features = [np.ascontiguousarray(f, dtype=np.float32) for f in features]
    for f in features:
        if len(f) and _largest_coordinate(np.abs(f).max(0) * scale_factors(f.shape[1])) >= KEY_LIMIT:
            raise ValueError(
                "features too large for the lattice's 16-bit coordinates: use larger thetas or a smaller image"
            )
    keys = [np.empty((len(f), f.shape[1] + 1, f.shape[1]), np.int16) for f in features]
    weights = [np.empty((len(f), f.shape[1] + 1), np.float32) for f in features]

    def simplices(share: tuple[int, int, int]) -> None:
        i, lo, hi = share
        _simplices(features[i], scale_factors(features[i].shape[1]), keys[i], weights[i], lo, hi)

    run(simplices, [(i, lo, hi) for i, f in enumerate(features) for lo, hi in spans(len(f), parts)])
    tables = run(lambda k: _insert(k.reshape(-1, k.shape[2])), keys)  # (ids, unique keys, hash table)
    neighbours = [np.empty((k.shape[1], len(unique), 2), np.int32) for k, (_, unique, _) in zip(keys, tables)]

    def links(share: tuple[int, int, int]) -> None:
        i, lo, hi = share
        _, unique, table = tables[i]
        _neighbours(unique, table, neighbours[i], lo, hi)

    run(links, [(i, lo, hi) for i, (_, unique, _) in enumerate(tables) for lo, hi in spans(len(unique), parts)])
    return [
        Lattice(ids.reshape(k.shape[:2]), w, nb) for k, (ids, _, _), w, nb in zip(keys, tables, weights, neighbours)
    ]


def _largest_coordinate(reach: np.ndarray) -> float:
    """A bound on |elevated coordinate| + d + 1 given each scaled feature's largest magnitude."""
    d = len(reach)
    tails = np.concatenate([np.cumsum(reach[::-1])[::-1], [0.0]])  # tails[j] = sum of reach[j:]
    return max([tails[0]] + [tails[j] + j * reach[j - 1] for j in range(1, d + 1)]) + d + 1


@jit()
def _simplices(features, scale, keys, weights, lo, hi):  # pragma: no cover - compiled
    """For points lo <= p < hi: the d+1 vertex keys (N, d+1, d) int16 and barycentric weights (N, d+1)."""
    d = features.shape[1]
    down = np.float32(1.0) / np.float32(d + 1)
    up = np.float32(d + 1)
    elevated = np.empty(d + 1, np.float32)
    rem0 = np.empty(d + 1, np.float32)
    rank = np.empty(d + 1, np.int64)
    bary = np.empty(d + 2, np.float32)
    for p in range(lo, hi):
        sm = np.float32(0.0)
        for j in range(d, 0, -1):
            cf = features[p, j - 1] * scale[j - 1]
            elevated[j] = sm - np.float32(j) * cf
            sm += cf
        elevated[0] = sm
        # the nearest remainder-0 point, then the rank of each coordinate's offset from it
        total = 0
        for i in range(d + 1):
            v = np.rint(down * elevated[i])
            rem0[i] = v * up
            total += np.int64(v)
            rank[i] = 0
        for i in range(d):
            di = elevated[i] - rem0[i]
            for j in range(i + 1, d + 1):
                if di < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d + 1):  # back onto the plane sum(x) = 0
            rank[i] += total
            if rank[i] < 0:
                rank[i] += d + 1
                rem0[i] += up
            elif rank[i] > d:
                rank[i] -= d + 1
                rem0[i] -= up
        bary[:] = 0.0
        for i in range(d + 1):  # barycentric weights (Adams et al. p.10)
            v = (elevated[i] - rem0[i]) * down
            bary[d - rank[i]] += v
            bary[d - rank[i] + 1] -= v
        bary[0] += np.float32(1.0) + bary[d + 1]
        for r in range(d + 1):
            weights[p, r] = bary[r]
            for i in range(d):  # corner r of the canonical simplex, moved to the point's simplex
                shift = r if rank[i] <= d - r else r - (d + 1)
                keys[p, r, i] = np.int16(np.int64(rem0[i]) + shift)


@jit()
def _hash(keys, k, step, j):  # pragma: no cover - compiled
    """Hash of keys[k] moved by ``step`` along lattice direction j (step 0: keys[k] itself)."""
    d = keys.shape[1]
    h = np.uint64(0)
    for i in range(d):
        x = np.int64(keys[k, i]) + step * (-d if i == j else 1)
        h = (h + np.uint64(x & 0xFFFF)) * np.uint64(2654435761)
    return h ^ (h >> np.uint64(29))


@jit()
def _same(keys, k, step, j, unique, e):  # pragma: no cover - compiled
    d = keys.shape[1]
    for i in range(d):
        if unique[e, i] != np.int64(keys[k, i]) + step * (-d if i == j else 1):
            return False
    return True


@jit()
def _table(unique, m, capacity):  # pragma: no cover - compiled
    """An open-addressing hash table (linear probing) of the first m unique keys."""
    table = np.full(capacity, -1, np.int32)
    mask = np.uint64(capacity - 1)
    for e in range(m):
        h = _hash(unique, e, 0, -1) & mask
        while table[h] >= 0:
            h = (h + np.uint64(1)) & mask
        table[h] = e
    return table


@jit()
def _insert(keys):  # pragma: no cover - compiled
    """Number the distinct keys in order of first appearance: (id per key, distinct keys, table)."""
    total = keys.shape[0]
    capacity = 1 << 12
    table = np.full(capacity, -1, np.int32)
    ids = np.empty(total, np.int32)
    unique = np.empty_like(keys)
    m = 0
    for k in range(total):
        if 2 * m >= capacity:
            capacity *= 2
            table = _table(unique, m, capacity)
        mask = np.uint64(capacity - 1)
        h = _hash(keys, k, 0, -1) & mask
        while True:
            e = table[h]
            if e < 0:
                table[h] = m
                unique[m] = keys[k]
                ids[k] = m
                m += 1
                break
            if _same(keys, k, 0, -1, unique, e):
                ids[k] = e
                break
            h = (h + np.uint64(1)) & mask
    return ids, unique[:m].copy(), table


@jit()
def _neighbours(unique, table, out, lo, hi):  # pragma: no cover - compiled
    """out[j, v] = the vertices at v -/+ the j-th lattice vector (M if absent), lo <= v < hi."""
    m, d = unique.shape
    mask = np.uint64(table.shape[0] - 1)
    for v in range(lo, hi):
        if v + 2 < hi:  # the table slots of the vertex after next: 2(d+1) lookups ahead
            for j in range(d + 1):
                for side in range(2):
                    prefetch(table, _hash(unique, v + 2, 2 * side - 1, j) & mask)
        for j in range(d + 1):
            for side in range(2):
                step = 2 * side - 1
                h = _hash(unique, v, step, j) & mask
                found = m
                while table[h] >= 0:
                    if _same(unique, v, step, j, unique, table[h]):
                        found = table[h]
                        break
                    h = (h + np.uint64(1)) & mask
                out[j, v, side] = found


@jit()
def splat(values, offsets, weights, source, lo, hi, first, last):  # pragma: no cover - compiled
    """values[v] = sum of weights * source over the corners at vertex v of the points lo <= p < hi,
    for the vertices first <= v < last that those points touch (the only rows it writes).

    Threads splat their own ranges of points into buffers of their own, then ``add_rows`` sums them.
    """
    c = source.shape[1]
    values[first:last] = 0.0
    for p in range(lo, hi):
        if p + PREFETCH_AHEAD < hi:
            for j in range(offsets.shape[1]):
                prefetch(values, offsets[p + PREFETCH_AHEAD, j])
        for j in range(offsets.shape[1]):
            o = offsets[p, j]
            w = weights[p, j]
            for col in range(0, c, LANES):
                store8(values, o, col, load8(values, o, col) + w * load8(source, p, col))


@jit()
def add_rows(target, other, lo, hi):  # pragma: no cover - compiled
    """target[lo:hi] += other[lo:hi]: one thread's splat added to another's."""
    c = target.shape[1]
    for v in range(lo, hi):
        for col in range(0, c, LANES):
            store8(target, v, col, load8(target, v, col) + load8(other, v, col))


@jit()
def blur_step(dst, src, neighbours, j, lo, hi):  # pragma: no cover - compiled
    """dst[v] = src[v] + (src[v - e_j] + src[v + e_j]) / 2 for lo <= v < hi: [1 2 1]/2 along direction j."""
    c = src.shape[1]
    half = np.float32(0.5)
    for v in range(lo, hi):
        if v + PREFETCH_AHEAD < hi:
            prefetch(src, neighbours[j, v + PREFETCH_AHEAD, 0])
            prefetch(src, neighbours[j, v + PREFETCH_AHEAD, 1])
        a = neighbours[j, v, 0]
        b = neighbours[j, v, 1]
        for col in range(0, c, LANES):
            store8(dst, v, col, load8(src, v, col) + half * (load8(src, a, col) + load8(src, b, col)))


@jit()
def slice_(out, values, offsets, weights, lo, hi):  # pragma: no cover - compiled
    """out[p] = sum over corners j of weights[p, j] * values[offsets[p, j]], lo <= p < hi."""
    c = values.shape[1]
    for p in range(lo, hi):
        for col in range(0, c, LANES):
            total = broadcast8(0.0)
            for j in range(offsets.shape[1]):
                total = total + weights[p, j] * load8(values, offsets[p, j], col)
            store8(out, p, col, total)


def buffers(lattice: Lattice, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Two (M+1) x C float32 buffers for splat and blur (C a multiple of LANES); row M (the absent
    neighbour) is zero."""
    shape = (lattice.num_vertices + 1, channels)
    pair = np.empty(shape, np.float32), np.empty(shape, np.float32)
    for buffer in pair:
        buffer[-1] = 0.0
    return pair


def blurred(values: np.ndarray, scratch: np.ndarray, lattice: Lattice) -> np.ndarray:
    """Which of the two buffers holds the result after blurring along all d+1 directions."""
    return values if len(lattice.neighbours) % 2 == 0 else scratch


def filter_(lattice: Lattice, source: np.ndarray) -> np.ndarray:
    """K * source (N x C float32) with the lattice's approximate Gaussian K (no normalisation)."""
    n, c = source.shape
    padded = np.zeros((n, -(-c // LANES) * LANES), np.float32)  # whole vectors per row
    padded[:, :c] = source
    m = lattice.num_vertices
    values, scratch = buffers(lattice, padded.shape[1])
    splat(values, lattice.offsets, lattice.weights, padded, 0, n, 0, m)
    src, dst = values, scratch
    for j in range(len(lattice.neighbours)):
        blur_step(dst, src, lattice.neighbours, j, 0, m)
        src, dst = dst, src
    slice_(padded, src, lattice.offsets, lattice.weights * lattice.alpha, 0, n)
    return padded[:, :c].copy()
