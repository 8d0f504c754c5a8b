"""Readers for the data set layouts people have on disk, and `build_dataset` to pick one by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import loadmat

from deeplab.data.base import (
    IGNORE_INDEX,
    DatasetError,
    SegmentationDataset,
    apply_table,
    lookup_table,
    require_files,
)
from deeplab.data.classes import ADE20K_CLASSES, CITYSCAPES, CITYSCAPES_NUM_LABEL_IDS
from deeplab.data.folder import FolderDataset
from deeplab.data.shapes import ShapesDataset
from deeplab.imageio import read_mask
from deeplab.palette import VOC_CLASSES, voc_palette


def _find_dir(root: str | Path, candidates: Iterable[str], marker: str, what: str) -> Path:
    """The first root/candidate holding `marker`; a DatasetError naming the root otherwise."""
    root = Path(root)
    for c in candidates:
        if (root / c / marker).exists():
            return root / c
    raise DatasetError(f"{root}: no {what} found (looked for {marker} under it)")


def _read_list(path: Path, split: str) -> list[str]:
    """Sample ids of a split list file (one per line)."""
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise DatasetError(f"{path}: no such split list (splits there: {', '.join(have) or 'none'})")
    names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: split {split!r} lists no images")
    return names


class ListDataset(SegmentationDataset):
    """Samples given as parallel lists of image and mask paths, masks mapped through a table."""

    def __init__(
        self,
        images: Sequence[Path],
        masks: Sequence[Path],
        names: Sequence[str],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        lut: np.ndarray,
        transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, seed)
        require_files(images, "image")
        require_files(masks, "mask")
        self.images, self.masks, self.names = list(images), list(masks), list(names)
        self.classes = list(classes)
        self.palette = [tuple(int(c) for c in rgb) for rgb in palette]
        self.lut = lut

    def paths(self, index: int) -> tuple[Path, Path]:
        return self.images[index], self.masks[index]

    def read_label(self, path: Path) -> np.ndarray:
        return apply_table(read_mask(path), self.lut, path)


def _voc_labels() -> tuple[list[str], list[tuple[int, ...]], np.ndarray]:
    identity = lookup_table([(v, v) for v in range(len(VOC_CLASSES))] + [(255, IGNORE_INDEX)])
    palette = [tuple(int(c) for c in rgb) for rgb in voc_palette(len(VOC_CLASSES))]
    return list(VOC_CLASSES), palette, identity


def voc_dir(root: str | Path) -> Path:
    """The VOC2012 folder: root itself, root/VOC2012 or root/VOCdevkit/VOC2012."""
    return _find_dir(root, ["", "VOC2012", "VOCdevkit/VOC2012"], "ImageSets/Segmentation", "VOC2012")


def voc(root: str | Path, split: str = "train", transform: Callable | None = None, seed: int = 0):
    """PASCAL VOC 2012: ImageSets/Segmentation/{split}.txt, JPEGImages, SegmentationClass PNGs."""
    d = voc_dir(root)
    names = _read_list(d / "ImageSets" / "Segmentation" / f"{split}.txt", split)
    classes, palette, lut = _voc_labels()
    images = [d / "JPEGImages" / f"{n}.jpg" for n in names]
    masks = [d / "SegmentationClass" / f"{n}.png" for n in names]
    return ListDataset(images, masks, names, classes, palette, lut, transform, seed)


class VOCAugDataset(ListDataset):
    """VOC 2012 + SBD: train_aug = VOC train + SBD train + SBD val - VOC val (10,582 images).

    VOC's own PNG mask is used where VOC annotates the image, SBD's `cls/*.mat` otherwise;
    split "val" is VOC val.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train_aug",
        transform: Callable | None = None,
        seed: int = 0,
        sbd_root: str | Path | None = None,
    ) -> None:
        d = voc_dir(root)
        lists = d / "ImageSets" / "Segmentation"
        voc_train = set(_read_list(lists / "train.txt", "train"))
        voc_val = _read_list(lists / "val.txt", "val")
        if split == "val":
            names = voc_val
        elif split in ("train", "train_aug"):
            sbd = _find_dir(
                sbd_root or root,
                ["", "dataset", "benchmark_RELEASE/dataset", "SBD/dataset", "SBD"],
                "cls",
                "SBD data set (benchmark_RELEASE/dataset with cls/*.mat)",
            )
            sbd_names = _read_list(sbd / "train.txt", "train") + _read_list(sbd / "val.txt", "val")
            names = sorted((voc_train | set(sbd_names)) - set(voc_val))
        else:
            raise DatasetError(f"voc_aug has splits train_aug (alias train) and val, not {split!r}")
        images = [d / "JPEGImages" / f"{n}.jpg" for n in names]
        masks = [
            d / "SegmentationClass" / f"{n}.png" if n in voc_train or split == "val" else sbd / "cls" / f"{n}.mat"
            for n in names
        ]
        super().__init__(images, masks, names, *_voc_labels(), transform, seed)

    def read_label(self, path: Path) -> np.ndarray:
        if path.suffix != ".mat":
            return super().read_label(path)
        return apply_table(read_sbd_mat(path), self.lut, path)


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class map of an SBD `cls/*.mat` file (struct GTcls, field Segmentation) as uint8."""

    try:
        gt = loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        seg = np.asarray(gt.Segmentation)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as err:
        raise DatasetError(f"{path}: not an SBD class map (GTcls.Segmentation): {err}") from None
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > 255:
        raise DatasetError(f"{path}: GTcls.Segmentation is not a 2-D map of values 0..255")
    return seg.astype(np.uint8)


def cityscapes(root: str | Path, split: str = "train", transform: Callable | None = None, seed: int = 0):
    """Cityscapes fine: leftImg8bit/{split}/{city}/*.png with gtFine labelIds -> 19 train ids."""
    root = _find_dir(root, ["", "cityscapes"], "leftImg8bit", "Cityscapes (leftImg8bit/, gtFine/)")
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        folder = root / "leftImg8bit" / split
        raise DatasetError(f"{folder}: no *_leftImg8bit.png images in split {split!r}")
    names = [p.name[: -len("_leftImg8bit.png")] for p in images]
    masks = [root / "gtFine" / split / p.parent.name / f"{n}_gtFine_labelIds.png" for p, n in zip(images, names)]
    ignored = [(v, IGNORE_INDEX) for v in range(CITYSCAPES_NUM_LABEL_IDS)] + [(255, IGNORE_INDEX)]
    lut = lookup_table(ignored)
    for train_id, (label_id, _, _) in enumerate(CITYSCAPES):
        lut[label_id] = train_id
    classes = [name for _, name, _ in CITYSCAPES]
    palette = [colour for _, _, colour in CITYSCAPES]
    return ListDataset(images, masks, names, classes, palette, lut, transform, seed)


def ade20k(root: str | Path, split: str = "training", transform: Callable | None = None, seed: int = 0):
    """ADE20K SceneParse150: images/{training,validation}/*.jpg, annotations/*.png; 0 -> ignore."""
    root = _find_dir(root, ["", "ADEChallengeData2016"], "annotations", "ADEChallengeData2016")
    folder = {"train": "training", "val": "validation"}.get(split, split)
    images = sorted((root / "images" / folder).glob("*.jpg"))
    if not images:
        raise DatasetError(f"{root / 'images' / folder}: no .jpg images in split {split!r}")
    names = [p.stem for p in images]
    masks = [root / "annotations" / folder / f"{n}.png" for n in names]
    n = len(ADE20K_CLASSES)
    lut = lookup_table([(0, IGNORE_INDEX)] + [(v, v - 1) for v in range(1, n + 1)])
    palette = [tuple(int(c) for c in rgb) for rgb in voc_palette(n + 1)[1:]]
    return ListDataset(images, masks, names, ADE20K_CLASSES, palette, lut, transform, seed)


def _shapes(
    root: str | Path | None,
    split: str,
    transform: Callable | None = None,
    num_images: int | None = None,
    size: int = 256,
    seed: int = 0,
) -> ShapesDataset:
    """The generated data set; `root` is not used (nothing is read from disk)."""
    return ShapesDataset(split, num_images, size, seed, transform)


DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "voc": voc,
    "voc_aug": VOCAugDataset,
    "cityscapes": cityscapes,
    "ade20k": ade20k,
    "folder": FolderDataset,
    "shapes": _shapes,
}


def build_dataset(
    name: str, root: str | Path | None, split: str, transform: Callable | None = None, **kw: Any
) -> SegmentationDataset:
    """Open data set `name` (voc, voc_aug, cityscapes, ade20k, folder, shapes) at `root`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    if root is None and name != "shapes":
        raise DatasetError(f"dataset {name!r} needs a root folder (--root DIR, or data.root in a config)")
    if root is not None and name != "shapes" and not Path(root).is_dir():
        raise DatasetError(f"{root}: no such folder (root of dataset {name!r})")
    accepted = [p for p in list(inspect.signature(DATASETS[name]).parameters)[3:] if p not in ("args", "kwargs")]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise DatasetError(
            f"option(s) {', '.join(unknown)} do not apply to dataset {name!r}; "
            f"it takes: {', '.join(accepted) or 'none'} (data.options / data.val_options)"
        )
    return DATASETS[name](root, split, transform, **kw)
