"""File-level CRF refinement for `deeplab crf`: an image, a probability .npy, a label PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deeplab.crf import DenseCRF
from deeplab.imageio import read_image, write_label_png
from deeplab.palette import voc_palette


def load_probs(path: str | Path) -> np.ndarray:
    """Read a CxHxW array from a .npy file (no pickles); errors name the file."""
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        if Path(path).is_file() and Path(path).read_bytes()[:6] != b"\x93NUMPY":
            raise ValueError(f"{path}: not a .npy array file (C x H x W probabilities, from numpy.save)") from None
        raise ValueError(f"{path}: cannot read a .npy array ({err})") from None
    if not isinstance(probs, np.ndarray):
        raise ValueError(f"{path}: expected one array in a .npy file, found an .npz archive")
    if probs.ndim != 3:
        raise ValueError(f"{path}: expected C x H x W probabilities, got shape {probs.shape}")
    return probs


def refine_file(
    image_path: str | Path, probs_path: str | Path, output: str | Path, crf: DenseCRF, from_logits: bool = False
) -> np.ndarray:
    """Refine PROBS.npy on IMAGE with ``crf`` and write the labels as a VOC-palette PNG; returns them."""

    image, probs = read_image(image_path), load_probs(probs_path)
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"{probs_path}: probabilities are {probs.shape[1]}x{probs.shape[2]} but "
            f"{image_path} is {image.shape[0]}x{image.shape[1]}"
        )
    if probs.shape[0] > 256:
        raise ValueError(f"{probs_path}: {probs.shape[0]} classes do not fit an 8-bit label PNG")
    try:
        labels = crf(image, probs, from_logits=from_logits).argmax(0)
    except ValueError as err:
        raise ValueError(f"{probs_path}: {err}") from None
    write_label_png(output, labels, voc_palette(probs.shape[0]))
    return labels
