"""Readers for the data set layouts people have on disk, and `build_dataset` to pick one by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from deeplab.data.base import SegmentationDataset
from deeplab.data.shapes import ShapesDataset


def _shapes(root: str | Path | None, split: str, transform: Callable | None, **kw: Any):
    """The generated data set; `root` is not used (nothing is read from disk)."""
    return ShapesDataset(split, transform=transform, **kw)


DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "shapes": _shapes,
}


def build_dataset(
    name: str, root: str | Path | None, split: str, transform: Callable | None = None, **kw: Any
) -> SegmentationDataset:
    """Open data set `name` (voc, voc_aug, cityscapes, ade20k, folder, shapes) at `root`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root, split, transform, **kw)
