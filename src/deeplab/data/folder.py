"""`folder`: images/ and masks/ matched by file stem, with a classes file naming the classes.

Layout: root/images/*.{jpg,png,...}, root/masks/*.png, root/classes.txt (lines `name r g b`, or
just `name`) or root/classes.yaml (a list of names, of {name, color}, or a name -> [r, g, b]
mapping). A class named `ignore` or `void` gives the colour of ignored pixels (label 255). Masks
are index PNGs (palette or gray: the pixel value is the class) or RGB PNGs mapped by the colours.
Splits: root/{split}.txt listing file stems, or root/{split}/images + root/{split}/masks;
split None (or "all") takes every image. ``palette="voc"``, ``"cityscapes"`` or ``"ade20k"``
(data.options) reads masks stored in that data set's colours without a classes file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from deeplab.data.base import (
    IGNORE_INDEX,
    DatasetError,
    MaskValueError,
    SegmentationDataset,
    apply_table,
    lookup_table,
)
from deeplab.data.classes import named_palettes
from deeplab.imageio import IMAGE_SUFFIXES, ImageReadError, read_image, read_mask
from deeplab.palette import voc_palette

CLASS_FILES = ("classes.txt", "classes.yaml", "classes.yml")
IGNORE_NAMES = ("ignore", "void")


def read_classes(path: Path) -> tuple[list[str], list[tuple[int, ...] | None], tuple | None]:
    """(names, colours or None per class, ignore colour or None) from a classes.txt / .yaml."""
    entries = _yaml_entries(path) if path.suffix in (".yaml", ".yml") else _txt_entries(path)
    names, colours, ignore = [], [], None
    for name, colour in entries:
        if colour is not None and (len(colour) != 3 or not all(0 <= c <= 255 for c in colour)):
            raise DatasetError(f"{path}: class {name!r} has colour {colour}, expected 3 values 0..255")
        if name.lower() in IGNORE_NAMES:
            ignore = tuple(colour) if colour is not None else None
        else:
            names.append(name)
            colours.append(tuple(colour) if colour is not None else None)
    if not names:
        raise DatasetError(f"{path}: no classes listed")
    return names, colours, ignore


def _txt_entries(path: Path) -> list[tuple[str, list[int] | None]]:
    entries: list[tuple[str, list[int] | None]] = []
    for line in path.read_text().splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if len(words) >= 4 and all(w.isdigit() for w in words[-3:]):
            entries.append((" ".join(words[:-3]), [int(w) for w in words[-3:]]))
        else:
            entries.append((" ".join(words), None))
    return entries


def _yaml_entries(path: Path) -> list[tuple[str, list[int] | None]]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DatasetError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if isinstance(data, dict):
        data = data.get("classes", data)
    if isinstance(data, dict):
        return [(str(k), list(v) if v is not None else None) for k, v in data.items()]
    if isinstance(data, list):
        return [
            (str(e["name"]), e.get("color", e.get("colour"))) if isinstance(e, dict) else (str(e), None) for e in data
        ]
    raise DatasetError(f"{path}: expected a list or mapping of classes")


class FolderDataset(SegmentationDataset):
    """Image/mask pairs in plain folders (see the module docstring for the layout)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        transform: Callable | None = None,
        seed: int = 0,
        classes_file: str | Path | None = None,
        palette: str | None = None,
    ) -> None:
        super().__init__(transform, seed)
        root = Path(root)
        base = root / split if split and (root / split / "images").is_dir() else root
        for sub in ("images", "masks"):
            if not (base / sub).is_dir():
                raise DatasetError(f"{base / sub}: no such folder (folder layout: images/ and masks/)")
        if palette is not None:
            self._named_palette(palette)
        else:
            self._read_classes(classes_file, base, root)
        images = _by_stem(base / "images", IMAGE_SUFFIXES)
        masks = _by_stem(base / "masks", (".png",))
        stems = self._split_stems(root, base, split, images)
        missing = [s for s in stems if s not in masks]
        if missing:
            raise DatasetError(
                f"{base / 'masks' / (missing[0] + '.png')}: no mask for image {images[missing[0]]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        self.names = stems
        self.images = [images[s] for s in stems]
        self.masks = [masks[s] for s in stems]

    def _named_palette(self, name: str) -> None:
        """Classes and colours of a known data set (masks stored in its colours); no classes file."""
        palettes = named_palettes()
        if name not in palettes:
            raise DatasetError(f"unknown palette {name!r}; named palettes: {', '.join(palettes)}")
        classes, colours, ignore = palettes[name]
        self._set_classes(classes, list(colours), ignore, f"the {name} palette", shared="ignored")

    def _read_classes(self, classes_file, base: Path, root: Path) -> None:
        if classes_file is None:
            found = [d / f for d in (base, root) for f in CLASS_FILES if (d / f).is_file()]
            if not found:
                raise DatasetError(f"{root}: no classes file; write {root / 'classes.txt'} with lines 'name r g b'")
            classes_file = found[0]
        path = Path(classes_file)
        if not path.is_file():
            raise DatasetError(f"{path}: no such classes file")
        classes, colours, ignore = read_classes(path)
        self._set_classes(classes, colours, ignore, path)

    def _set_classes(
        self, classes: list[str], colours: list, ignore: tuple | None, source: object, shared: str = "error"
    ) -> None:
        """Classes and the colour -> label table. A colour two classes share cannot be decoded: an
        error for a classes file, ignored pixels for a data set's own palette (ADE20K has one)."""
        self.classes = classes
        default = voc_palette(len(self.classes))
        self.palette = [tuple(int(v) for v in (c or default[k])) for k, c in enumerate(colours)]
        indices = [(v, v) for v in range(len(self.classes))] + [(IGNORE_INDEX, IGNORE_INDEX)]
        self.lut = lookup_table(indices)
        keyed: dict[int, int] = {}
        for k, c in enumerate(colours):
            if c is None:
                continue
            key = int(_key(c))
            if key in keyed and shared == "error":
                first = classes[keyed[key]]
                raise DatasetError(f"{source}: classes {first!r} and {classes[k]!r} share the colour {tuple(c)}")
            keyed[key] = IGNORE_INDEX if key in keyed else k
        if ignore is not None:
            keyed[int(_key(ignore))] = IGNORE_INDEX
        self._colour_keys = np.array(sorted(keyed), dtype=np.int64)
        self._colour_labels = np.array([keyed[k] for k in sorted(keyed)], dtype=np.uint8)
        self._classes_file = source

    def _split_stems(self, root: Path, base: Path, split: str | None, images: dict) -> list[str]:
        if base != root or split in (None, "all"):
            stems = list(images)
        elif (root / f"{split}.txt").is_file():
            listing = root / f"{split}.txt"
            stems = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
            unknown = [s for s in stems if s not in images]
            if unknown:
                raise DatasetError(f"{listing}: {unknown[0]!r} has no image in {base / 'images'}")
        else:
            raise DatasetError(
                f"{root}: no split {split!r} (expected {root / f'{split}.txt'} or {root / split / 'images'}/)"
            )
        if not stems:
            raise DatasetError(f"{base}: split {split or 'all'!r} has no images")
        return stems

    def paths(self, index: int) -> tuple[Path, Path]:
        return self.images[index], self.masks[index]

    def read_label(self, path: Path) -> np.ndarray:
        """Index PNGs as they are; RGB PNGs through the classes file's colours."""
        try:
            with Image.open(path) as img:
                colour = img.mode in ("RGB", "RGBA")
        except (OSError, ValueError) as err:
            raise ImageReadError(f"{path}: not a readable image ({err})") from None
        if not colour:
            return apply_table(read_mask(path), self.lut, path)
        if not len(self._colour_keys):
            raise DatasetError(f"{path}: an RGB mask, but {self._classes_file} gives no class colours")
        keys = np.asarray(_key(read_image(path).transpose(2, 0, 1)))
        pos = np.clip(np.searchsorted(self._colour_keys, keys), 0, len(self._colour_keys) - 1)
        known = self._colour_keys[pos] == keys
        if not known.all():
            bad = np.unique(keys[~known])[:5]
            raise MaskValueError(
                f"{path}: colours {[tuple(int(b >> s & 255) for s in (16, 8, 0)) for b in bad]} "
                f"are not class colours of {self._classes_file}"
            )
        return self._colour_labels[pos]


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def _key(rgb) -> np.ndarray | int:
    """Pack (r, g, b) (scalars or arrays) into one integer per colour."""
    r, g, b = (np.asarray(c, dtype=np.int64) for c in rgb)
    key = (r << 16) | (g << 8) | b
    return int(key) if key.ndim == 0 else key
