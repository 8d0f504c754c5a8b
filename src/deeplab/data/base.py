"""The dataset base class: sample loading, per-sample random generators, mask checks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from deeplab.constants import IGNORE_INDEX
from deeplab.imageio import ImageReadError, orient, read_image_oriented


class DatasetError(ValueError):
    """A data set that cannot be used as it is on disk; the message names the file or folder."""


class MaskValueError(DatasetError):
    """A label map holding values that are neither a class index nor the ignore label."""


def check_same_size(image_size: tuple, mask_size: tuple, image_path: Any, mask_path: Any) -> None:
    """Raise DatasetError naming both files when an image (h, w) and its mask (h, w) differ."""
    if tuple(image_size[:2]) != tuple(mask_size[:2]):
        raise DatasetError(
            f"{image_path} is {image_size[1]}x{image_size[0]} but its mask {mask_path} is "
            f"{mask_size[1]}x{mask_size[0]} (width x height)"
        )


def align_mask(image: np.ndarray, mask: np.ndarray, orientation: int, image_path: Any, mask_path: Any) -> np.ndarray:
    """The mask in the frame of the upright image (EXIF orientation applied to the image).

    A mask is taken as drawn on the image's stored pixels, so it gets the image's orientation too,
    unless its shape shows that it was drawn on the upright image already (a non-square image whose
    mask has the upright shape). Raise DatasetError naming both files when no frame fits.
    """
    if orientation != 1:
        turned = orient(mask, orientation)
        if turned.shape[:2] == image.shape[:2]:
            return turned
    check_same_size(image.shape, mask.shape, image_path, mask_path)
    return mask


def require_files(paths: Sequence[Path], what: str) -> None:
    """Raise DatasetError naming the first missing path (and how many are missing)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: no such {what} file{more}")


def lookup_table(pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """A 256-entry raw value -> label table; -1 marks raw values that are not allowed."""
    lut = np.full(256, -1, dtype=np.int16)
    for raw, label in pairs:
        lut[raw] = label
    return lut


def apply_table(raw: np.ndarray, lut: np.ndarray, path: Path) -> np.ndarray:
    """Map raw mask values through `lut`, raising MaskValueError naming the file and bad values."""
    counts = np.bincount(raw.ravel(), minlength=256)
    bad = np.flatnonzero((counts > 0) & (lut < 0))
    if bad.size:
        allowed = np.flatnonzero(lut >= 0)
        raise MaskValueError(
            f"{path}: mask values {bad[:10].tolist()} are not labels of this data set (allowed: {_ranges(allowed)})"
        )
    return lut[raw].astype(np.uint8)


def _ranges(values: np.ndarray) -> str:
    """'0..20, 255' style summary of sorted integers."""
    parts, start = [], None
    for k, v in enumerate(values):
        start = v if start is None else start
        if k + 1 == len(values) or values[k + 1] != v + 1:
            parts.append(f"{start}..{v}" if v > start else f"{v}")
            start = None
    return ", ".join(parts)


class SegmentationDataset(Dataset):
    """Image/mask pairs: `ds[i] -> (HxWx3 uint8, HxW uint8)`, or what `transform` makes of them.

    A transform with an `rng` argument gets a numpy Generator seeded by (seed, epoch, index), so
    augmentation is reproducible and resumable: call `set_epoch(epoch)` before each epoch.
    """

    classes: list[str]
    palette: list[tuple[int, ...]]
    names: list[str]
    ignore_index: int = IGNORE_INDEX

    def __init__(self, transform: Callable | None = None, seed: int = 0) -> None:
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read sample `index` as (image HxWx3 uint8, mask HxW uint8), checked and upright."""
        image_path, mask_path = self.paths(index)
        mask = self.read_label(mask_path)
        image, orientation = read_image_oriented(image_path)
        return image, align_mask(image, mask, orientation, image_path, mask_path)

    def paths(self, index: int) -> tuple[Path, Path]:
        """(image path, mask path) of sample `index`."""
        raise NotImplementedError

    def read_label(self, path: Path) -> np.ndarray:
        """Read a label map as train ids (HxW uint8), checking every value."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws the next samples use."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int) -> np.random.Generator:
        """The random generator of sample `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range 0..{len(self) - 1}")
        image, mask = self.load(index)
        if self.transform is None:
            return image, mask
        if _takes_rng(self.transform):
            return self.transform(image, mask, rng=self.sample_rng(index))
        return self.transform(image, mask)

    def validate(self, progress: bool = False) -> np.ndarray:
        """Decode every image and mask; raise on unreadable files, bad values or sizes (one line
        naming the first bad file and how many there are); return pixel counts per class."""

        counts = np.zeros(256, dtype=np.int64)
        errors: list[ValueError] = []
        for i in tqdm(range(len(self)), desc="scan", unit="img", disable=not progress, dynamic_ncols=True):
            try:
                _, mask = self.load(i)  # a full decode: a truncated JPEG fails here, not mid-training
            except (DatasetError, ImageReadError) as err:
                errors.append(err)
                continue
            counts += np.bincount(mask.ravel(), minlength=256)
        if errors:
            kind = type(errors[0]) if isinstance(errors[0], DatasetError) else DatasetError
            raise kind(f"{len(errors)} of {len(self)} samples are bad; first: {errors[0]}")
        return counts[: self.num_classes]


def _takes_rng(transform: Callable) -> bool:
    try:
        return "rng" in inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False


def class_frequencies(dataset: Any, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, pixels of the images holding it) over a data set's masks (ignored
    pixels left out): what median-frequency class weights are made of."""
    num_classes = len(dataset.classes)
    pixels, image_pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    for i in tqdm(range(len(dataset)), desc="class frequencies", unit="img", disable=not progress, dynamic_ncols=True):
        mask = np.asarray(dataset[i][1] if not hasattr(dataset, "load") else dataset.load(i)[1])
        counts = np.bincount(mask[mask < num_classes].ravel(), minlength=num_classes)[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += int(counts.sum())
    return pixels, image_pixels


def scan_masks(dataset: SegmentationDataset, progress: bool = False) -> np.ndarray:
    """Pre-training scan: every image and mask decoded and checked; returns pixel counts per class."""
    return dataset.validate(progress)
