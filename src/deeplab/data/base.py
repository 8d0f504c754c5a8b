"""The dataset base class: sample loading, per-sample random generators, mask checks."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from deeplab.imageio import read_image

IGNORE_INDEX = 255


class DatasetError(ValueError):
    """A data set that cannot be used as it is on disk; the message names the file or folder."""


class MaskValueError(DatasetError):
    """A label map holding values that are neither a class index nor the ignore label."""


def check_mask_values(
    counts: np.ndarray, num_classes: int, where: str, ignore_index: int = IGNORE_INDEX
) -> None:
    """Raise MaskValueError naming `where` if a 256-bin value histogram has out-of-range labels."""
    bad = [v for v in np.flatnonzero(counts) if v >= num_classes and v != ignore_index]
    if bad:
        raise MaskValueError(
            f"{where}: mask values {bad[:10]} are neither a class (0..{num_classes - 1}) "
            f"nor the ignore label {ignore_index}"
        )


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Any, mask_path: Any) -> None:
    """Raise DatasetError naming both files when the image and its mask differ in size."""
    if image.shape[:2] != mask.shape[:2]:
        raise DatasetError(
            f"{image_path} is {image.shape[1]}x{image.shape[0]} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]} (width x height)"
        )


def require_files(paths: Sequence[Path], what: str) -> None:
    """Raise DatasetError naming the first missing path (and how many are missing)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: no such {what} file{more}")


class SegmentationDataset(Dataset):
    """Image/mask pairs: `ds[i] -> (HxWx3 uint8, HxW uint8)`, or what `transform` makes of them.

    A transform with an `rng` argument gets a numpy Generator seeded by (seed, epoch, index), so
    augmentation is reproducible and resumable: call `set_epoch(epoch)` before each epoch.
    """

    classes: list[str]
    palette: list[tuple[int, int, int]]
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
        """Read sample `index` as (image HxWx3 uint8, mask HxW uint8), checked."""
        image_path, mask_path = self.paths(index)
        mask = self.read_label(mask_path)
        image = read_image(image_path)
        check_same_size(image, mask, image_path, mask_path)
        return image, mask

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

    def validate(self) -> np.ndarray:
        """Read every mask; raise on bad values or sizes; return pixel counts per class."""
        counts = np.zeros(256, dtype=np.int64)
        for i in range(len(self)):
            image_path, mask_path = self.paths(i)
            mask = self.read_label(mask_path)
            size = _image_size(image_path)
            if size != mask.shape[:2]:
                raise DatasetError(
                    f"{image_path} is {size[1]}x{size[0]} but its mask {mask_path} is "
                    f"{mask.shape[1]}x{mask.shape[0]} (width x height)"
                )
            counts += np.bincount(mask.ravel(), minlength=256)
        return counts[: self.num_classes]


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _takes_rng(transform: Callable) -> bool:
    try:
        return "rng" in inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False


def scan_masks(dataset: SegmentationDataset) -> np.ndarray:
    """Quick pre-training scan of every mask (values, sizes); returns pixel counts per class."""
    return dataset.validate()
