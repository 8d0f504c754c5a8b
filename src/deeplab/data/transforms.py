"""Joint image + mask transforms: random scale, pad (mean / ignore), random crop, flip, normalise.

Every random draw comes from the `rng` argument (a numpy Generator or an int seed), so a sample's
augmentation is fixed by the seed the data set derives from (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from deeplab.constants import IMAGENET_MEAN, IMAGENET_STD


def resize(image: np.ndarray, mask: np.ndarray, height: int, width: int):
    """Resize the image bilinearly and the mask by nearest neighbour to height x width."""
    img = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    lab = Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(img), np.asarray(lab)


def pad_to(image: np.ndarray, mask: np.ndarray, height: int, width: int, fill: Sequence[int], ignore: int):
    """Pad bottom/right up to at least height x width: the image with `fill`, the mask with `ignore`."""
    h, w = mask.shape
    if h >= height and w >= width:
        return image, mask
    H, W = max(h, height), max(w, width)
    out_img = np.empty((H, W, 3), dtype=np.uint8)
    out_img[:] = np.asarray(fill, dtype=np.uint8)
    out_img[:h, :w] = image
    out_mask = np.full((H, W), ignore, dtype=np.uint8)
    out_mask[:h, :w] = mask
    return out_img, out_mask


def to_tensors(image: np.ndarray, mask: np.ndarray, mean: Sequence[float], std: Sequence[float]):
    """(HxWx3 uint8, HxW) -> (3xHxW float32 normalised with mean/std on the 0-1 scale, HxW int64)."""
    x = torch.from_numpy(_writable(image)).permute(2, 0, 1).float().div_(255.0)
    x = x.sub_(torch.tensor(mean).view(3, 1, 1)).div_(torch.tensor(std).view(3, 1, 1))
    return x, torch.from_numpy(_writable(mask)).long()


def _writable(a: np.ndarray) -> np.ndarray:
    """A contiguous, writable array torch can wrap (PIL's arrays are read-only)."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class TrainTransform:
    """Training augmentation of DeepLab: scale in scale_range, pad, crop crop_size, flip."""

    def __init__(
        self,
        crop_size: int | tuple[int, int] = 513,
        scale_range: tuple[float, float] = (0.5, 2.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flip: bool = True,
        ignore_index: int = 255,
    ) -> None:
        self.crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if min(self.crop) < 1 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"bad crop_size {crop_size} or scale_range {scale_range}")
        self.scale_range, self.flip = tuple(scale_range), flip
        self.mean, self.std, self.ignore_index = tuple(mean), tuple(std), ignore_index
        self.fill = tuple(int(round(255 * m)) for m in mean)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = _generator(rng)
        scale = rng.uniform(self.scale_range[0], self.scale_range[1])
        h, w = mask.shape
        image, mask = resize(image, mask, max(1, round(h * scale)), max(1, round(w * scale)))
        ch, cw = self.crop
        image, mask = pad_to(image, mask, ch, cw, self.fill, self.ignore_index)
        top = int(rng.integers(0, mask.shape[0] - ch + 1))
        left = int(rng.integers(0, mask.shape[1] - cw + 1))
        image, mask = image[top : top + ch, left : left + cw], mask[top : top + ch, left : left + cw]
        if self.flip and rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return to_tensors(image, mask, self.mean, self.std)


class EvalTransform:
    """Evaluation on whole images: normalise only."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(image, mask, self.mean, self.std)
