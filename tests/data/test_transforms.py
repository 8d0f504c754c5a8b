import numpy as np
import pytest
import torch

from deeplab.constants import IMAGENET_MEAN
from deeplab.data.transforms import EvalTransform, TrainTransform, pad_to, resize


def _sample(h=40, w=60):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:, w // 2 :] = 3
    return image, mask


def test_train_transform_is_deterministic_given_the_generator():
    image, mask = _sample()
    t = TrainTransform(crop_size=32, scale_range=(0.5, 2.0))
    x1, y1 = t(image, mask, rng=np.random.default_rng(7))
    x2, y2 = t(image, mask, rng=7)
    assert x1.shape == (3, 32, 32) and x1.dtype == torch.float32
    assert y1.shape == (32, 32) and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    draws = {t(image, mask, rng=s)[1].sum().item() for s in range(12)}
    assert len(draws) > 3  # scale, crop and flip do vary with the seed


def test_padding_uses_the_mean_colour_and_ignore():
    image, mask = _sample(10, 12)
    img, lab = pad_to(image, mask, 16, 20, (1, 2, 3), 255)
    assert img.shape == (16, 20, 3) and (img[10:, :] == (1, 2, 3)).all()
    assert (lab[10:] == 255).all() and (lab[:, 12:] == 255).all() and (lab[:10, :12] == mask).all()
    x, y = TrainTransform(crop_size=64, scale_range=(1.0, 1.0), flip=False)(image, mask, rng=0)
    assert (y == 255).sum() == 64 * 64 - 10 * 12
    assert x[:, 40:, 40:].abs().max() < 0.01  # mean colour normalises to ~0


def test_resize_is_bilinear_for_images_and_nearest_for_masks():
    image, mask = _sample(40, 60)
    img, lab = resize(image, mask, 80, 120)
    assert img.shape == (80, 120, 3) and set(np.unique(lab)) == {0, 3}


def test_flip_mirrors_image_and_mask_together():
    image, mask = _sample(32, 32)
    t = TrainTransform(crop_size=32, scale_range=(1.0, 1.0))
    flips = [t(image, mask, rng=s) for s in range(8)]
    flipped = [y for _, y in flips if y[0, 0] == 3]
    assert flipped and all((y[:, :16] == 3).all() for y in flipped)
    plain = EvalTransform()(image, mask)[0]
    assert any(torch.equal(x, plain.flip(-1)) for x, y in flips if y[0, 0] == 3)


def test_eval_transform_normalises_whole_images():
    image, mask = _sample(33, 47)
    x, y = EvalTransform()(image, mask)
    assert x.shape == (3, 33, 47) and torch.equal(y, torch.from_numpy(mask).long())
    expected = (image[5, 6, 0] / 255 - IMAGENET_MEAN[0]) / 0.229
    assert x[0, 5, 6].item() == pytest.approx(expected, abs=1e-5)
