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
from ._simd import LANES, aligned_empty, broadcast8, load8, store8, store_fence, stream8


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


KEY_LIMIT = 32000  # lattice coordinates fit 16 bits, as in the C++ code
STREAM_BYTES = 16 << 20  # blur buffers from this size on are written past the caches (see streams)
WORD_BITS = 63  # bits of a packed key word that hold fields (the sign bit stays clear)


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
    hash tables, serial, are filled side by side (one per thread). Vertex keys are packed into
    int64 words (``packing``): a lookup hashes and compares one word and reads one table row.
    """
    features = [np.ascontiguousarray(f, dtype=np.float32) for f in features]
    for f in features:
        if len(f) and _largest_coordinate(np.abs(f).max(0) * scale_factors(f.shape[1])) >= KEY_LIMIT:
            raise ValueError(
                "features too large for the lattice's 16-bit coordinates: use larger thetas or a smaller image"
            )
    weights = [np.empty((len(f), f.shape[1] + 1), np.float32) for f in features]
    shares = [(i, lo, hi) for i, f in enumerate(features) for lo, hi in spans(len(f), parts)]

    def elevated_range(share: tuple[int, int, int]) -> np.ndarray:
        i, lo, hi = share
        return _elevated_range(features[i], scale_factors(features[i].shape[1]), lo, hi)

    ranges = run(elevated_range, shares)
    layouts = [
        packing(*_combined([r for share, r in zip(shares, ranges) if share[0] == i])) for i in range(len(features))
    ]
    packed = [np.empty((len(f), f.shape[1] + 1, layout[3]), np.int64) for f, layout in zip(features, layouts)]

    def simplices(share: tuple[int, int, int]) -> None:
        i, lo, hi = share
        _simplices(features[i], scale_factors(features[i].shape[1]), *layouts[i][:3], packed[i], weights[i], lo, hi)

    run(simplices, shares)
    packed = [k.reshape(-1, k.shape[2]) for k in packed]
    tables = run(lambda i: _insert(packed[i], features[i].shape[1] + 1), range(len(features)))  # ids, keys, table
    steps = [directions(f.shape[1], *layout[1:]) for f, layout in zip(features, layouts)]
    neighbours = [np.empty((len(st), len(unique), 2), np.int32) for st, (_, unique, _) in zip(steps, tables)]

    def links(share: tuple[int, int, int]) -> None:
        i, lo, hi = share
        _, unique, table = tables[i]
        _neighbours(unique, table, steps[i], neighbours[i], lo, hi)

    run(links, [(i, lo, hi) for i, (_, unique, _) in enumerate(tables) for lo, hi in spans(len(unique), parts)])
    return [
        Lattice(ids.reshape(len(f), -1), w, nb) for f, (ids, _, _), w, nb in zip(features, tables, weights, neighbours)
    ]


def _combined(ranges: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest elevated coordinates over several shares' (2, d) ranges (0 without points)."""
    stacked = np.stack(ranges)
    lowest, highest = stacked[:, 0].min(0), stacked[:, 1].max(0)
    return np.where(np.isfinite(lowest), lowest, 0.0), np.where(np.isfinite(highest), highest, 0.0)


def _largest_coordinate(reach: np.ndarray) -> float:
    """A bound on |elevated coordinate| + d + 1 given each scaled feature's largest magnitude."""
    d = len(reach)
    tails = np.concatenate([np.cumsum(reach[::-1])[::-1], [0.0]])  # tails[j] = sum of reach[j:]
    return max([tails[0]] + [tails[j] + j * reach[j - 1] for j in range(1, d + 1)]) + d + 1


@jit(inline=True)
def _elevate(features, p, scale, elevated):  # pragma: no cover - compiled
    """elevated = point p's features scaled and lifted onto the plane sum(x) = 0 in d+1 dimensions."""
    d = features.shape[1]
    sm = np.float32(0.0)
    for j in range(d, 0, -1):
        cf = features[p, j - 1] * scale[j - 1]
        elevated[j] = sm - np.float32(j) * cf
        sm += cf
    elevated[0] = sm


@jit()
def _elevated_range(features, scale, lo, hi):  # pragma: no cover - compiled
    """(2, d): the smallest and largest of the first d elevated coordinates of points lo <= p < hi."""
    d = features.shape[1]
    elevated = np.empty(d + 1, np.float32)
    out = np.empty((2, d), np.float64)
    out[0], out[1] = np.inf, -np.inf
    for p in range(lo, hi):
        _elevate(features, p, scale, elevated)
        for i in range(d):
            out[0, i] = min(out[0, i], elevated[i])
            out[1, i] = max(out[1, i], elevated[i])
    return out


@jit()
def _simplices(features, scale, low, word, shift, keys, weights, lo, hi):  # pragma: no cover - compiled
    """For points lo <= p < hi: the packed keys (N, d+1, W) of the d+1 vertices of the point's
    simplex and their barycentric weights (N, d+1)."""
    d = features.shape[1]
    down = np.float32(1.0) / np.float32(d + 1)
    up = np.float32(d + 1)
    elevated = np.empty(d + 1, np.float32)
    rem0 = np.empty(d + 1, np.float32)
    rank = np.empty(d + 1, np.int64)
    bary = np.empty(d + 2, np.float32)
    owner = np.empty(d + 1, np.int64)  # owner[k]: the coordinate of rank k
    ones = np.zeros(keys.shape[2], np.int64)  # the packed key of (1, ..., 1)
    for i in range(d):
        ones[word[i]] += np.int64(1) << shift[i]
    for p in range(lo, hi):
        _elevate(features, p, scale, elevated)
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
                smaller = di < elevated[j] - rem0[j]  # no branch: the outcome is a coin toss
                rank[i] += smaller
                rank[j] += 1 - smaller
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
            owner[rank[r]] = r
        # corner 0 is the remainder-0 point; corner r moves every coordinate of corner r-1 by +1
        # except the one of rank d-r+1, which moves by -d (coordinate d is not stored)
        for w in range(keys.shape[2]):
            keys[p, 0, w] = 0
        for i in range(d):
            keys[p, 0, word[i]] += (np.int64(rem0[i]) - low[i]) << shift[i]
        for r in range(1, d + 1):
            for w in range(keys.shape[2]):
                keys[p, r, w] = keys[p, r - 1, w] + ones[w]
            i = owner[d - r + 1]
            if i < d:
                keys[p, r, word[i]] -= np.int64(d + 1) << shift[i]


def packing(lowest: np.ndarray, highest: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """How to pack vertex keys into W int64 words, given the range of the points' elevated
    coordinates: per coordinate its low, word and shift.

    A key coordinate lies within (d+1)/2 + 2d of its point's elevated coordinate (the rounding to
    a remainder-0 point, the wrap, the corner's shift); it is stored as x - low in just enough bits,
    with d + 1 more of room on each side, so that a neighbour key (each coordinate moved by at most
    d) packs by adding a constant, with no carry into the next field. Fields never straddle words;
    one word holds the keys of the CRF's usual images.
    """
    d = len(lowest)
    reach = 3 * (d + 1)
    low = np.floor(lowest).astype(np.int64) - reach
    high = np.ceil(highest).astype(np.int64) + reach
    word, shift = np.zeros(d, np.int64), np.zeros(d, np.int64)
    w, used = 0, 0
    for i in range(d):
        bits = int(high[i] - low[i]).bit_length()
        if used + bits > WORD_BITS:
            w, used = w + 1, 0
        word[i], shift[i] = w, used
        used += bits
    return low, word, shift, w + 1


def directions(d: int, word: np.ndarray, shift: np.ndarray, words: int) -> np.ndarray:
    """(d+1, W) int64: what the packed key gains by one step along each lattice direction j
    (coordinate j - d, the others + 1; direction d moves all d stored coordinates by + 1)."""
    out = np.zeros((d + 1, words), np.int64)
    for j in range(d + 1):
        for i in range(d):
            out[j, word[i]] += (-d if i == j else 1) << int(shift[i])
    return out


@jit(inline=True)
def _slot(keys, k, step, steps, j, bits):  # pragma: no cover - compiled
    """The home slot (of 2**bits) of keys[k] + step * steps[j]: Fibonacci hashing of its words
    (as many as steps has: keys may have more columns)."""
    h = np.uint64(0)
    for w in range(steps.shape[1]):
        h = (h ^ np.uint64(keys[k, w] + step * steps[j, w])) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(64 - bits))


@jit(inline=True)
def _find(table, keys, k, step, steps, j, bits):  # pragma: no cover - compiled
    """The slot that holds keys[k] + step * steps[j], or the empty slot where it would go."""
    words = steps.shape[1]
    mask = (1 << bits) - 1
    h = _slot(keys, k, step, steps, j, bits)
    while table[h, words] >= 0:
        same = True
        for w in range(words):
            same &= table[h, w] == keys[k, w] + step * steps[j, w]
        if same:
            return h
        h = (h + 1) & mask
    return h


@jit()
def _grow(table, bits):  # pragma: no cover - compiled
    """The entries of ``table`` in a table of 2**bits slots."""
    words = table.shape[1] - 1
    bigger = np.full((1 << bits, words + 1), -1, np.int64)
    still = np.zeros((1, words), np.int64)
    for e in range(table.shape[0]):
        if table[e, words] >= 0:
            h = _find(bigger, table, e, 0, still, 0, bits)
            for w in range(words + 1):
                bigger[h, w] = table[e, w]
    return bigger


@jit()
def _insert(packed, corners):  # pragma: no cover - compiled
    """Number the distinct packed keys in order of first appearance: (id per key, distinct keys,
    table). The table (open addressing, linear probing, at most half full) holds each key's words
    and its id (-1: empty), so that a lookup reads one row. Keys come in points of ``corners``:
    a corner equal to the previous point's same corner (neighbouring pixels often share their
    simplex) takes its id without a lookup."""
    total, words = packed.shape
    bits = 12
    table = np.full((1 << bits, words + 1), -1, np.int64)
    ids = np.empty(total, np.int32)
    unique = np.empty_like(packed)
    still = np.zeros((1, words), np.int64)
    m = 0
    for k in range(total):
        if k >= corners:
            same = True
            for w in range(words):
                same &= packed[k, w] == packed[k - corners, w]
            if same:
                ids[k] = ids[k - corners]
                continue
        if 2 * m >= table.shape[0]:
            bits += 1
            table = _grow(table, bits)
        if k + PREFETCH_AHEAD < total:
            prefetch(table, _slot(packed, k + PREFETCH_AHEAD, 0, still, 0, bits))
        h = _find(table, packed, k, 0, still, 0, bits)
        if table[h, words] < 0:
            for w in range(words):
                table[h, w] = packed[k, w]
                unique[m, w] = packed[k, w]
            table[h, words] = m
            m += 1
        ids[k] = table[h, words]
    return ids, unique[:m].copy(), table


@jit()
def _neighbours(unique, table, steps, out, lo, hi):  # pragma: no cover - compiled
    """out[j, v] = the vertices at v -/+ the j-th lattice direction (M if absent), lo <= v < hi."""
    m, words = unique.shape
    bits = 0
    while (1 << bits) < table.shape[0]:  # the table has 2**bits slots
        bits += 1
    for v in range(lo, hi):
        if v + 2 < hi:  # the table slots of the vertex after next: 2(d+1) lookups ahead
            for j in range(steps.shape[0]):
                for side in range(2):
                    prefetch(table, _slot(unique, v + 2, 2 * side - 1, steps, j, bits))
        for j in range(steps.shape[0]):
            for side in range(2):
                e = table[_find(table, unique, v, 2 * side - 1, steps, j, bits), words]
                out[j, v, side] = e if e >= 0 else m


@jit()
def splat(values, offsets, weights, source, lo, hi, first, last):  # pragma: no cover - compiled
    """values[v - first] = sum of weights * source over the corners at vertex v of the points
    lo <= p < hi, for the vertices first <= v < last that those points touch (all they write).

    Threads splat their own ranges of points into buffers of their own that hold only the rows
    they touch, then ``add_rows`` sums them.
    """
    c = source.shape[1]
    values[: last - first] = 0.0
    for p in range(lo, hi):
        if p + PREFETCH_AHEAD < hi:
            for j in range(offsets.shape[1]):
                prefetch(values, offsets[p + PREFETCH_AHEAD, j] - first)
        for j in range(offsets.shape[1]):
            o = offsets[p, j] - first
            w = weights[p, j]
            for col in range(0, c, LANES):
                store8(values, o, col, load8(values, o, col) + w * load8(source, p, col))


@jit()
def add_rows(target, other, lo, hi, first):  # pragma: no cover - compiled
    """target[lo:hi] += other[lo - first:hi - first]: one thread's splat (rows from ``first`` on)
    added to another's."""
    c = target.shape[1]
    for v in range(lo, hi):
        for col in range(0, c, LANES):
            store8(target, v, col, load8(target, v, col) + load8(other, v - first, col))


@jit()
def blur_step(dst, src, neighbours, j, lo, hi, stream):  # pragma: no cover - compiled
    """dst[v] = src[v] + (src[v - e_j] + src[v + e_j]) / 2 for lo <= v < hi: [1 2 1]/2 along direction j.

    ``stream``: write dst past the caches (``streams``: a buffer too big to stay cached).
    """
    c = src.shape[1]
    half = np.float32(0.5)
    for v in range(lo, hi):
        if v + PREFETCH_AHEAD < hi:
            prefetch(src, neighbours[j, v + PREFETCH_AHEAD, 0])
            prefetch(src, neighbours[j, v + PREFETCH_AHEAD, 1])
        a = neighbours[j, v, 0]
        b = neighbours[j, v, 1]
        for col in range(0, c, LANES):
            value = load8(src, v, col) + half * (load8(src, a, col) + load8(src, b, col))
            if stream:
                stream8(dst, v, col, value)
            else:
                store8(dst, v, col, value)
    if stream:
        store_fence()


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
    pair = aligned_empty(shape), aligned_empty(shape)
    for buffer in pair:
        buffer[-1] = 0.0
    return pair


def streams(buffer: np.ndarray) -> bool:
    """Whether the blur writes this buffer with non-temporal stores: when it is too big to stay in
    the cache (STREAM_BYTES) and aligned for them."""
    return buffer.nbytes >= STREAM_BYTES and buffer.ctypes.data % 64 == 0


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
        blur_step(dst, src, lattice.neighbours, j, 0, m, streams(dst))
        src, dst = dst, src
    slice_(padded, src, lattice.offsets, lattice.weights * lattice.alpha, 0, n)
    return padded[:, :c].copy()
