"""Reading images and label maps from disk, whatever their mode, and writing palette PNGs."""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deeplab.atomic import atomic_write

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(ValueError):
    """An image or mask file that cannot be read; the message names the file."""


def _open(path: str | Path) -> Image.Image:
    """Open and decode an image file; ImageReadError (one line naming the file) when that fails."""
    try:
        with open(path, "rb") as f:
            return _decode(f, path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: a folder, not an image file") from None


def decode_image(data: bytes, name: str, max_pixels: int | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB (EXIF orientation applied) from an encoded image in memory (an upload);
    ImageReadError naming ``name`` when it is empty, not an image, truncated, or above ``max_pixels``."""
    if not data:
        raise ImageReadError(f"{name}: empty, no image data")
    return to_rgb(_decode(io.BytesIO(data), name, max_pixels))


def _decode(file: BinaryIO, name: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Decode an open image file, refusing more than ``max_pixels`` (checked before decoding)."""
    try:
        img = Image.open(file)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageReadError(
                f"{name}: {img.width}x{img.height} pixels, above the limit of {max_pixels} (a decompression bomb?)"
            )
        img.load()
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{name}: refusing to decode, it declares more than twice PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels "
            "(a decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (no format PIL reads)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"{name}: not a readable image ({err})") from None
    return img


# EXIF orientation tag value -> the PIL transpose that shows the image upright
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1 = upright, also when there is none)."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except (TypeError, ValueError):
        return 1
    return value if value in _ORIENTATIONS else 1


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an HxW or HxWxC uint8 array; 1 returns it unchanged."""
    if orientation not in _ORIENTATIONS:
        return array
    return np.asarray(Image.fromarray(array).transpose(_ORIENTATIONS[orientation]))


def to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode (gray, RGBA, palette, 16-bit, CMYK) to HxWx3 uint8 RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def as_rgb(image: np.ndarray | Image.Image | str | Path, stacklevel: int = 2) -> np.ndarray:
    """The one image normaliser: HxWx3 uint8 RGB from an image file's path, a PIL image of any mode
    (``to_rgb``) or an array: gray (HxW, HxWx1), RGB, RGBA (alpha dropped); arrays that are not
    uint8 are taken on the 0-255 scale, rounded, and clipped with a warning where they leave it."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
            raise ValueError(f"image must be numbers (or a file path), got dtype {image.dtype}")
        values = image.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("image contains NaN or infinite values")
        if values.min() < 0 or values.max() > 255:
            warnings.warn(
                f"image values span {values.min():g}..{values.max():g}, outside 0-255; clipped",
                RuntimeWarning,
                stacklevel=stacklevel + 1,
            )
        image = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image[..., :3]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB, with EXIF orientation applied."""
    return to_rgb(_open(path))


def read_image_oriented(path: str | Path) -> tuple[np.ndarray, int]:
    """(HxWx3 uint8 RGB with EXIF orientation applied, the orientation tag that was applied)."""
    img = _open(path)
    return to_rgb(img), exif_orientation(img)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label map as HxW uint8: palette indices as they are, gray values as they are
    (with the file's own EXIF orientation applied, like images)."""
    img = _open(path)
    return orient(_mask_values(img, path), exif_orientation(img))


def _mask_values(img: Image.Image, path: str | Path) -> np.ndarray:
    if img.mode in ("P", "L"):
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        if arr.max() > 255:
            raise ImageReadError(f"{path}: label values up to {arr.max()} do not fit uint8")
        return arr.astype(np.uint8)
    raise ImageReadError(f"{path}: a label map must be a palette or grayscale PNG, found mode {img.mode}")


def write_label_png(path: str | Path, labels: np.ndarray, palette: Sequence[Sequence[int]] | None = None) -> None:
    """Write an HxW label map as a palette PNG (class index = pixel value)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or (labels.size and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"{path}: labels must be a 2-D map of values 0..255")
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [int(c) for rgb in (palette or []) for c in rgb[:3]]
    flat += [0] * (768 - len(flat))
    if palette is not None and len(palette) < 256:
        flat[255 * 3 : 256 * 3] = [224, 224, 192]  # VOC's colour for ignore (255)
    img.putpalette(flat[:768])
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def list_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted list of image paths."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            found.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise ImageReadError(f"{item}: no such file, folder or matching glob")
            found += matches
    return found
