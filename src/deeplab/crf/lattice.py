"""The permutohedral lattice (Adams, Baek & Davis 2010), as in Krähenbühl's dense CRF code.

Each d-dimensional feature vector is elevated to d+1 dimensions, its enclosing simplex found by
rounding and sorting, and its d+1 vertices (barycentric weights) looked up in a hash table.
Filtering = splat onto the vertices, blur with [1 2 1]/2 along each of the d+1 lattice
directions in turn, slice back with the same weights times alpha = 1/(1+2^-d). All arithmetic is
float32, like the C++ code, so the result matches pydensecrf to rounding.

The splat is done as a gather (each vertex sums its pixels, in pixel order), so splat, blur and
slice all run in parallel (numba prange) without atomics. Compiled with numba, cached on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._jit import jit, prange

_EMPTY = -1


@dataclass(frozen=True)
class Lattice:
    """A built lattice: N pixels, M vertices, feature dimension d."""

    offsets: np.ndarray  # (N, d+1) int32: vertex of each simplex corner
    weights: np.ndarray  # (N, d+1) float32: barycentric weights
    starts: np.ndarray  # (M+1,) int32: CSR of the splat, vertex -> its (pixel, corner) entries
    entries: np.ndarray  # (N*(d+1),) int32: pixel*(d+1) + corner, in pixel order per vertex
    neighbours: np.ndarray  # (d+1, M, 2) int32: the blur neighbours along each direction, M = none

    @property
    def num_vertices(self) -> int:
        """M, the number of lattice vertices that some pixel touches."""
        return self.starts.shape[0] - 1

    @property
    def alpha(self) -> np.float32:
        """Krähenbühl's slice scale 1/(1+2^-d)."""
        d = self.offsets.shape[1] - 1
        return np.float32(1.0) / (np.float32(1.0) + np.float32(2.0) ** np.float32(-d))


def scale_factors(d: int) -> np.ndarray:
    """The diagonal of E (Adams et al. p.5) times the expected std sqrt(2/3)(d+1), in float32."""
    inv_std_dev = float(np.float32(math.sqrt(2.0 / 3.0) * (d + 1)))
    return np.array([1.0 / math.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)], np.float32)


@jit(parallel=True)
def _simplices(features, scale):  # pragma: no cover - compiled
    """Per pixel: the d+1 vertex keys (N, d+1, d) int16 and barycentric weights (N, d+1)."""
    n, d = features.shape
    keys = np.empty((n, d + 1, d), np.int16)
    bary_out = np.empty((n, d + 1), np.float32)
    down = np.float32(1.0) / np.float32(d + 1)
    up = np.float32(d + 1)
    for p in prange(n):
        elevated = np.empty(d + 1, np.float32)
        rem0 = np.empty(d + 1, np.float32)
        rank = np.zeros(d + 1, np.int64)
        bary = np.zeros(d + 2, np.float32)
        sm = np.float32(0.0)
        for j in range(d, 0, -1):
            cf = features[p, j - 1] * scale[j - 1]
            elevated[j] = sm - np.float32(j) * cf
            sm += cf
        elevated[0] = sm
        total = 0
        for i in range(d + 1):
            v = np.rint(down * elevated[i])
            rem0[i] = v * up
            total += np.int64(v)
        for i in range(d):
            di = elevated[i] - rem0[i]
            for j in range(i + 1, d + 1):
                if di < elevated[j] - rem0[j]:
                    rank[i] += 1
                else:
                    rank[j] += 1
        for i in range(d + 1):
            rank[i] += total
            if rank[i] < 0:
                rank[i] += d + 1
                rem0[i] += up
            elif rank[i] > d:
                rank[i] -= d + 1
                rem0[i] -= up
        for i in range(d + 1):
            v = (elevated[i] - rem0[i]) * down
            bary[d - rank[i]] += v
            bary[d - rank[i] + 1] -= v
        bary[0] += np.float32(1.0) + bary[d + 1]
        for r in range(d + 1):
            bary_out[p, r] = bary[r]
            for i in range(d):
                # canonical simplex: corner r adds r to coordinates ranked <= d-r, r-(d+1) to the rest
                shift = r if rank[i] <= d - r else r - (d + 1)
                keys[p, r, i] = np.int16(np.int64(rem0[i]) + shift)
    return keys, bary_out


@jit()
def _hash(keys, k):  # pragma: no cover - compiled
    h = np.uint64(0)
    for i in range(keys.shape[1]):
        h = (h + np.uint64(np.int64(keys[k, i]) & 0xFFFF)) * np.uint64(2654435761)
    return h ^ (h >> np.uint64(29))


@jit()
def _insert(flat_keys):  # pragma: no cover - compiled
    """Deduplicate keys in order of first appearance: (vertex id per key, unique keys)."""
    total, d = flat_keys.shape
    capacity = 1024
    while capacity < 2 * total:
        capacity *= 2
    mask = np.uint64(capacity - 1)
    table = np.full(capacity, _EMPTY, np.int32)
    ids = np.empty(total, np.int32)
    unique = np.empty((total, d), np.int16)
    m = 0
    for k in range(total):
        h = _hash(flat_keys, k) & mask
        while True:
            e = table[h]
            if e == _EMPTY:
                table[h] = m
                unique[m] = flat_keys[k]
                ids[k] = m
                m += 1
                break
            same = True
            for i in range(d):
                if unique[e, i] != flat_keys[k, i]:
                    same = False
                    break
            if same:
                ids[k] = e
                break
            h = (h + np.uint64(1)) & mask
    return ids, unique[:m].copy(), table


@jit(parallel=True)
def _neighbours(unique, table):  # pragma: no cover - compiled
    """For each direction j and vertex: the vertices at -/+ the j-th lattice vector, M if absent."""
    m, d = unique.shape
    mask = np.uint64(table.shape[0] - 1)
    out = np.empty((d + 1, m, 2), np.int32)
    for v in prange(m):
        probe = np.empty((1, d), np.int16)
        for j in range(d + 1):
            for side in range(2):
                step = -1 if side == 0 else 1
                for i in range(d):
                    probe[0, i] = unique[v, i] + step
                if j < d:
                    probe[0, j] = unique[v, j] - step * d
                h = _hash(probe, 0) & mask
                found = m
                while True:
                    e = table[h]
                    if e == _EMPTY:
                        break
                    same = True
                    for i in range(d):
                        if unique[e, i] != probe[0, i]:
                            same = False
                            break
                    if same:
                        found = e
                        break
                    h = (h + np.uint64(1)) & mask
                out[j, v, side] = found
    return out


@jit()
def _csr(ids, m):  # pragma: no cover - compiled
    """Group the (pixel, corner) entries by vertex, keeping pixel order (a stable counting sort)."""
    starts = np.zeros(m + 1, np.int32)
    for k in range(ids.shape[0]):
        starts[ids[k] + 1] += 1
    for v in range(m):
        starts[v + 1] += starts[v]
    fill = starts[:-1].copy()
    entries = np.empty(ids.shape[0], np.int32)
    for k in range(ids.shape[0]):
        entries[fill[ids[k]]] = k
        fill[ids[k]] += 1
    return starts, entries


def build(features: np.ndarray) -> Lattice:
    """Build the lattice of ``features`` (N x d, already divided by the kernel's thetas)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    n, d = features.shape
    keys, weights = _simplices(features, scale_factors(d))
    ids, unique, table = _insert(keys.reshape(n * (d + 1), d))
    starts, entries = _csr(ids, unique.shape[0])
    return Lattice(ids.reshape(n, d + 1), weights, starts, entries, _neighbours(unique, table))


@jit(parallel=True)
def splat(values, starts, entries, entry_weights, source):  # pragma: no cover - compiled
    """values[v] = sum over v's entries e of entry_weights[e] * source[pixel of e] (row M zeroed)."""
    m = starts.shape[0] - 1
    c = source.shape[1]
    d1 = entry_weights.shape[1]
    for v in prange(m):
        acc = np.zeros(c, np.float32)
        for e in range(starts[v], starts[v + 1]):
            k = entries[e]
            p = k // d1
            w = entry_weights[p, k - p * d1]
            for ch in range(c):
                acc[ch] += w * source[p, ch]
        values[v] = acc
    values[m] = 0.0


@jit(parallel=True)
def blur(values, scratch, neighbours):  # pragma: no cover - compiled
    """[1 2 1]/2 along each lattice direction in turn; the result ends in ``values``."""
    d1, m = neighbours.shape[0], neighbours.shape[1]
    c = values.shape[1]
    scratch[m] = 0.0
    src, dst = values, scratch
    for j in range(d1):
        for v in prange(m):
            a = neighbours[j, v, 0]
            b = neighbours[j, v, 1]
            for ch in range(c):
                dst[v, ch] = src[v, ch] + np.float32(0.5) * (src[a, ch] + src[b, ch])
        src, dst = dst, src
    if d1 % 2 == 1:
        values[:] = scratch


@jit(parallel=True)
def slice_(out, values, offsets, slice_weights):  # pragma: no cover - compiled
    """out[p] = sum over corners j of slice_weights[p, j] * values[offsets[p, j]]."""
    n, d1 = offsets.shape
    c = values.shape[1]
    for p in prange(n):
        for ch in range(c):
            out[p, ch] = 0.0
        for j in range(d1):
            w = slice_weights[p, j]
            o = offsets[p, j]
            for ch in range(c):
                out[p, ch] += w * values[o, ch]


def filter_(lattice: Lattice, source: np.ndarray) -> np.ndarray:
    """K * source (N x C float32) with the lattice's approximate Gaussian K (no normalisation)."""
    source = np.ascontiguousarray(source, dtype=np.float32)
    m, c = lattice.num_vertices, source.shape[1]
    values = np.empty((m + 1, c), np.float32)
    scratch = np.empty_like(values)
    splat(values, lattice.starts, lattice.entries, lattice.weights, source)
    blur(values, scratch, lattice.neighbours)
    out = np.empty_like(source)
    slice_(out, values, lattice.offsets, lattice.weights * lattice.alpha)
    return out
