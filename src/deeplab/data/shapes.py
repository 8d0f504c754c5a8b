"""`shapes`: a generated multi-scale segmentation data set (no download, deterministic by seed).

Each image holds textured objects of six classes at scales from ~12 px to nearly the image size
(at least 10x apart in every image), painted over one another (occlusion), with thin parts (star
points, ring walls, cross arms) and hard edges, on a cluttered background whose distractor blobs
and lines reuse the objects' textures. A class is told by its outline and its texture family,
never by its colour: both texture colours are drawn at random for every object.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.data.base import DatasetError, SegmentationDataset
from deeplab.imageio import write_label_png

CLASSES = ["background", "disc", "square", "triangle", "star", "ring", "cross"]
PALETTE = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
]
# texture family of each object class (1..6); background blobs use any of them
TEXTURES = ("dots", "checks", "stripes", "noise", "waves", "grid")
SPLITS = {"train": 0, "val": 1}
DEFAULT_NUM_IMAGES = {"train": 2000, "val": 200}
MIN_OBJECT = 12  # smallest object across, pixels


@lru_cache(maxsize=8)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """size x cells matrix that bilinearly upsamples `cells` control values to `size` pixels."""
    pos = (np.arange(size) + 0.5) * cells / size - 0.5
    return np.stack([np.interp(pos, np.arange(cells), np.eye(cells)[k]) for k in range(cells)], 1)


def _smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    """A smooth random field (channels x size x size) in [0, 1]."""
    m = _interp_matrix(size, cells).astype(np.float32)
    return m @ rng.random((channels, cells, cells), dtype=np.float32) @ m.T


def _texture(family: str, u: np.ndarray, v: np.ndarray, period: float, rng) -> np.ndarray:
    """Weight in [0, 1] of the second colour at local coordinates (u, v)."""
    fu, fv = u / period, v / period
    if family == "dots":
        du, dv = fu - np.floor(fu) - 0.5, fv - np.floor(fv) - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if family == "checks":
        return ((np.floor(fu).astype(np.int32) + np.floor(fv).astype(np.int32)) & 1).astype(np.float32)
    if family == "stripes":
        return (fu - np.floor(fu) < 0.5).astype(np.float32)
    if family == "noise":  # blocky speckle: a random table indexed by the cell hash
        cells = np.floor(fu * 2).astype(np.int32) * 7919 + np.floor(fv * 2).astype(np.int32) * 104729
        return rng.random(4096, dtype=np.float32)[cells & 4095].round()
    if family == "waves":
        return 0.5 + 0.5 * np.sin(2 * np.pi * (fu + 0.3 * np.sin(2 * np.pi * fv / 3)))
    if family == "grid":
        return ((fu - np.floor(fu) < 0.3) | (fv - np.floor(fv) < 0.3)).astype(np.float32)
    raise ValueError(f"unknown texture {family!r}")


def _star(u: np.ndarray, v: np.ndarray, points: int, outer: float, inner: float) -> np.ndarray:
    """Inside test of a regular star (or, with inner = outer*cos(pi/n), a regular polygon)."""
    half = math.pi / points
    phi = np.abs(np.mod(np.arctan2(v, u) + half, 2 * half) - half)
    rho = np.hypot(u, v)
    x, y = rho * np.cos(phi), rho * np.sin(phi)
    ex, ey = inner * math.cos(half) - outer, inner * math.sin(half)
    # the origin is on the inside of the tip->valley edge: cross(e, O - tip) = outer * ey > 0
    return ex * y - ey * (x - outer) >= 0


def _shape(cls: int, u: np.ndarray, v: np.ndarray, r: float, rng) -> np.ndarray:
    """Boolean mask of object class `cls` of radius r in its local frame."""
    name = CLASSES[cls]
    if name == "disc":
        return u * u + v * v <= r * r
    if name == "square":
        return _star(u, v, 4, r, r * math.cos(math.pi / 4))
    if name == "triangle":
        return _star(u, v, 3, r, r * 0.5)
    if name == "star":
        return _star(u, v, 5, r, r * rng.uniform(0.38, 0.5))
    if name == "ring":
        rho2 = u * u + v * v
        inner = min(r * rng.uniform(0.55, 0.8), r - 2.0)
        return (rho2 <= r * r) & (rho2 >= inner * inner)
    arm = max(r * rng.uniform(0.12, 0.22), 1.0)  # cross: two thin bars
    au, av = np.abs(u), np.abs(v)
    return ((au <= arm) & (av <= r)) | ((av <= arm) & (au <= r))


def _colours(rng: np.random.Generator, lo: float = 0.0, hi: float = 255.0) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours at least ~90 apart, in [lo, hi]."""
    c1 = rng.uniform(lo, hi, 3)
    direction = rng.normal(size=3)
    c2 = c1 + direction / np.linalg.norm(direction) * rng.uniform(90, 180)
    return c1.astype(np.float32), np.clip(c2, lo, hi).astype(np.float32)


def _paint(image, where, weight, c1, c2, alpha: float = 1.0) -> None:
    """Blend a two-colour texture into the planar 3xHxW image where `where` (HxW) is set."""
    cover = where.astype(np.float32) * np.float32(alpha)  # arithmetic blending beats masking
    for c in range(3):
        image[c] += cover * (c1[c] + weight * (c2[c] - c1[c]) - image[c])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured clutter: smooth colour field, textured distractor blobs and thin lines."""
    image = 40 + 175 * _smooth_field(rng, size, 4, 3)  # planar 3 x size x size
    yy, xx = _coords(size)
    for _ in range(rng.integers(1, 4)):
        blob = _smooth_field(rng, size, int(rng.integers(4, 9)), 1)[0] > rng.uniform(0.62, 0.75)
        theta = rng.uniform(0, np.pi)
        u = xx * math.cos(theta) + yy * math.sin(theta)
        v = -xx * math.sin(theta) + yy * math.cos(theta)
        weight = _texture(TEXTURES[rng.integers(len(TEXTURES))], u, v, rng.uniform(3, 9), rng)
        _paint(image, blob, weight, *_colours(rng, 30, 225), alpha=rng.uniform(0.4, 0.8))
    for _ in range(rng.integers(2, 7)):
        theta, offset = rng.uniform(0, np.pi), rng.uniform(0, size)
        dist = np.abs(xx * math.cos(theta) + yy * math.sin(theta) - offset)
        line = dist < rng.uniform(0.5, 1.5)
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        _paint(image, line, 0.0, colour, colour, alpha=0.5)
    return image


@lru_cache(maxsize=4)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed field of pixel noise (std 6) twice the image size, cropped at random per image."""
    return np.random.default_rng(12345).standard_normal((2 * size, 2 * size), dtype=np.float32) * 6


def _noise_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pixel noise for one image: a random crop of the noise bank per channel."""
    bank = _noise_bank(size)
    y, x = rng.integers(0, size, (2, 3))
    return np.stack([bank[y[c] : y[c] + size, x[c] : x[c] + size] for c in range(3)])


@lru_cache(maxsize=4)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _object_sizes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Diameters: one large, one small (>= 10x apart for size 256), the rest log-uniform."""
    big = rng.uniform(0.6, 0.95) * size
    small = rng.uniform(MIN_OBJECT, 15.0)
    log_range = np.log(MIN_OBJECT), np.log(max(0.5 * size, MIN_OBJECT))
    rest = np.exp(rng.uniform(*log_range, rng.integers(2, 7)))
    return np.sort(np.concatenate([[big, small], rest]))[::-1]  # paint large first


def generate(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One sample: (image size x size x 3 uint8, mask size x size uint8 with labels 0..6)."""
    image = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    for diameter in _object_sizes(rng, size):
        cls = int(rng.integers(1, len(CLASSES)))
        r = float(diameter) / 2
        margin = r if diameter < size / 2 else 0.2 * size
        cy, cx = (float(c) for c in rng.uniform(margin, size - margin, 2))
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, size)
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * math.cos(theta) + dy * math.sin(theta)
        v = -dx * math.sin(theta) + dy * math.cos(theta)
        inside = _shape(cls, u, v, r, rng)
        period = float(np.clip(r * rng.uniform(0.2, 0.4), 3.0, 12.0))
        weight = _texture(TEXTURES[cls - 1], u + rng.uniform(0, 50), v, period, rng)
        _paint(image[:, y0:y1, x0:x1], inside, weight, *_colours(rng))
        mask[y0:y1, x0:x1][inside] = cls
    image += _noise_crop(rng, size)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image.transpose(1, 2, 0)), mask


class ShapesDataset(SegmentationDataset):
    """The generated data set: sample i is made from (seed, split, i) on demand, nothing stored.

    num_images defaults to 2000 for train and 200 for val; train and val never share a sample.
    """

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        size: int = 256,
        seed: int = 0,
        transform: Callable | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DatasetError(f"shapes has splits {sorted(SPLITS)}, not {split!r}")
        if size < 4 * MIN_OBJECT:
            raise DatasetError(f"shapes images must be at least {4 * MIN_OBJECT} px, got {size}")
        num_images = DEFAULT_NUM_IMAGES[split] if num_images is None else int(num_images)
        if num_images < 1:
            raise DatasetError(f"shapes needs num_images >= 1, got {num_images}")
        super().__init__(transform, seed)
        self.split, self.size = split, size
        self.classes, self.palette = list(CLASSES), list(PALETTE)
        self.names = [f"{split}_{i:05d}" for i in range(num_images)]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate sample `index` (always the same for the same seed, split and index)."""
        return generate(np.random.default_rng([self.seed, SPLITS[self.split], index]), self.size)

    def validate(self, progress: bool = False) -> np.ndarray:
        """Pixel counts per class over the whole split (the masks are valid by construction)."""
        counts = np.zeros(len(CLASSES), dtype=np.int64)
        for i in range(len(self)):
            counts += np.bincount(self.load(i)[1].ravel(), minlength=len(CLASSES))
        return counts


def write_dataset(
    root: str | Path,
    splits: dict[str, int] | None = None,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write the data set in the `folder` layout: images/, masks/ (palette PNGs), classes.txt
    and one {split}.txt list of file stems per split; returns root."""

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    lines = [f"{n} {r} {g} {b}" for n, (r, g, b) in zip(CLASSES, PALETTE)]
    (root / "classes.txt").write_text("\n".join(lines) + "\n")
    for split, count in (splits or DEFAULT_NUM_IMAGES).items():
        ds = ShapesDataset(split, count, size, seed)
        for i, name in enumerate(ds.names):
            image, mask = ds.load(i)
            Image.fromarray(image).save(root / "images" / f"{name}.png")
            write_label_png(root / "masks" / f"{name}.png", mask, PALETTE)
        (root / f"{split}.txt").write_text("\n".join(ds.names) + "\n")
    return root
