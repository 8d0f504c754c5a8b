"""The permutohedral lattice against an exact (every pair of points) Gaussian filter."""

from __future__ import annotations

import numpy as np
import pytest

from deeplab.crf import lattice


def exact_normalised_filter(features: np.ndarray, values: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """n * K(n * values), K_ij = exp(-|f_i - f_j|^2 / 2 sigma^2), n = 1/sqrt(K 1): slow and obvious."""
    f = features.astype(np.float64)
    k = np.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / (2 * sigma**2))
    n = 1 / np.sqrt(k.sum(1))
    return n[:, None] * (k @ (n[:, None] * values))


def lattice_normalised_filter(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    lat = lattice.build(features)
    n = 1 / np.sqrt(lattice.filter_(lat, np.ones((len(features), 1), np.float32))[:, 0])
    return n[:, None] * lattice.filter_(lat, (n[:, None] * values).astype(np.float32))


def features(d: int, h: int = 12, w: int = 14, seed: int = 0) -> np.ndarray:
    """Pixel positions (theta 2 or 5) plus, for d = 5, random colours (theta ~ a third of their spread)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.indices((h, w)).reshape(2, -1).astype(np.float32)
    if d == 2:
        return np.stack([xs / 2, ys / 2], 1).astype(np.float32)
    return np.concatenate([np.stack([xs / 5, ys / 5], 1), rng.uniform(0, 3, (h * w, 3))], 1).astype(np.float32)


@pytest.mark.parametrize("d, tolerance", [(2, 0.01), (5, 0.025)])
def test_matches_exact_gaussian_within_the_lattice_approximation(d, tolerance):
    f = features(d)
    values = np.random.default_rng(1).random((len(f), 3)).astype(np.float32)
    ours = lattice_normalised_filter(f, values)
    error = np.abs(ours - exact_normalised_filter(f, values)).mean()
    assert error < tolerance
    for wrong_sigma in (0.7, 1.5):  # the test can tell a kernel of the wrong width
        assert np.abs(ours - exact_normalised_filter(f, values, wrong_sigma)).mean() > 1.6 * error


def test_structure():
    f = features(5)
    lat = lattice.build(f)
    n, m = len(f), lat.num_vertices
    assert lat.offsets.shape == (n, 6) and lat.weights.shape == (n, 6) and lat.neighbours.shape == (6, m, 2)
    np.testing.assert_allclose(lat.weights.sum(1), 1, atol=1e-5)
    assert (lat.weights >= -1e-6).all()
    assert lat.offsets.min() >= 0 and lat.offsets.max() < m
    # every point's corners are distinct vertices; neighbours are mutual (v -> +e_j -> -e_j = v)
    assert all(len(set(row)) == 6 for row in lat.offsets.tolist())
    for j in range(6):
        minus, plus = lat.neighbours[j, :, 0], lat.neighbours[j, :, 1]
        has = plus < m
        np.testing.assert_array_equal(lat.neighbours[j, plus[has], 0], np.arange(m)[has])
        assert ((minus <= m) & (minus >= 0)).all()
    assert lat.alpha == np.float32(1 / (1 + 2**-5))


def test_identical_features_share_one_simplex():
    lat = lattice.build(np.zeros((7, 3), np.float32))
    assert lat.num_vertices == 4
    assert (lat.offsets == lat.offsets[0]).all()
    out = lattice.filter_(lat, np.arange(7, dtype=np.float32)[:, None])
    np.testing.assert_allclose(out, out[0, 0], rtol=1e-5)  # all points see the same sum


def test_coordinates_out_of_16_bit_range_are_an_error():
    with pytest.raises(ValueError, match="16-bit"):
        lattice.build(np.array([[0.0, 0.0], [20000.0, 0.0]], np.float32))


def test_insert_numbers_distinct_keys_in_order_of_first_appearance():
    rng = np.random.default_rng(0)
    distinct = rng.integers(-(2**40), 2**40, (6000, 2))  # more than the first table holds: it grows
    packed = np.ascontiguousarray(distinct[rng.integers(0, len(distinct), 40000)])
    ids, unique, _ = lattice._insert(packed, 3)
    first = {}
    for key in map(tuple, packed.tolist()):
        first.setdefault(key, len(first))
    np.testing.assert_array_equal(ids, [first[key] for key in map(tuple, packed.tolist())])
    np.testing.assert_array_equal(unique[ids], packed)


def test_neighbours_of_a_large_lattice_are_mutual_and_one_step_apart():
    f = features(5, h=60, w=70, seed=3)  # ~10k vertices: the hash table grows several times
    lat = lattice.build(f)
    m = lat.num_vertices
    assert m > 4096
    for j in range(6):
        plus = lat.neighbours[j, :, 1]
        has = plus < m
        assert has.mean() > 0.2
        np.testing.assert_array_equal(lat.neighbours[j, plus[has], 0], np.arange(m)[has])


def test_packing_keeps_fields_apart_and_spills_into_a_second_word():
    low, word, shift, words = lattice.packing(np.array([-5.0, 0.0]), np.array([5.0, 1e9]))
    assert words == 1 and shift[1] > shift[0]
    low, word, shift, words = lattice.packing(np.full(5, -3e4), np.full(5, 3e4))  # 17 bits each
    assert words == 2 and list(word) == [0, 0, 0, 1, 1]
    steps = lattice.directions(5, word, shift, words)
    assert steps.shape == (6, 2)


def test_keys_packed_in_several_words_give_the_same_lattice(monkeypatch):
    f = features(5, h=30, w=40, seed=4)
    one_word = lattice.build(f)
    monkeypatch.setattr(lattice, "WORD_BITS", 12)  # a field or two per word
    assert lattice.packing(np.full(5, -50.0), np.full(5, 50.0))[3] >= 3
    several = lattice.build(f)
    for name in ("offsets", "weights", "neighbours"):
        np.testing.assert_array_equal(getattr(several, name), getattr(one_word, name))


def test_blur_with_streaming_stores_equals_the_plain_blur():
    lat = lattice.build(features(5, h=20, w=30, seed=5))
    values, _ = lattice.buffers(lat, 16)
    values[:-1] = np.random.default_rng(6).random((lat.num_vertices, 16), dtype=np.float32)
    plain, streamed = (lattice.buffers(lat, 16)[1] for _ in range(2))
    for j in range(len(lat.neighbours)):
        lattice.blur_step(plain, values, lat.neighbours, j, 0, lat.num_vertices, False)
        lattice.blur_step(streamed, values, lat.neighbours, j, 0, lat.num_vertices, True)
        np.testing.assert_array_equal(streamed[:-1], plain[:-1])
