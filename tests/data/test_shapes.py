import numpy as np
import pytest

from deeplab.data.base import DatasetError
from deeplab.data.shapes import CLASSES, ShapesDataset, _object_sizes, generate


def test_samples_are_deterministic_and_splits_differ():
    a, b = ShapesDataset("train", 4, size=96, seed=3), ShapesDataset("train", 4, size=96, seed=3)
    ia, ma = a[2]
    ib, mb = b[2]
    assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    assert ia.shape == (96, 96, 3) and ia.dtype == np.uint8
    assert ma.shape == (96, 96) and ma.dtype == np.uint8
    assert not np.array_equal(ShapesDataset("val", 4, size=96, seed=3)[2][0], ia)
    assert not np.array_equal(ShapesDataset("train", 4, size=96, seed=4)[2][0], ia)


def test_classes_palette_and_label_range():
    ds = ShapesDataset("val", 12, size=128)
    assert ds.classes == CLASSES and len(ds.palette) == len(CLASSES) == 7
    assert ds.ignore_index == 255 and ds.names[0] == "val_00000" and len(ds) == 12
    counts = ds.validate()
    assert counts.shape == (7,) and (counts > 0).all()  # every class shows up
    assert counts.sum() == 12 * 128 * 128


def test_every_image_spans_a_tenfold_range_of_object_sizes():
    for i in range(50):
        sizes = _object_sizes(np.random.default_rng(i), 256)
        assert sizes.min() >= 12 and sizes.max() / sizes.min() >= 10


def test_objects_are_textured_not_flat():
    image, mask = generate(np.random.default_rng(0), 256)
    for cls in np.unique(mask)[1:]:
        pixels = image[mask == cls].astype(float)
        if len(pixels) > 400:
            assert pixels.std(axis=0).max() > 20, CLASSES[cls]


def test_transform_gets_a_per_sample_generator():
    seen = []

    def transform(image, mask, rng):
        seen.append(rng.integers(1 << 30))
        return mask

    ds = ShapesDataset("train", 3, size=64, transform=transform)
    ds[1], ds[1]
    ds.set_epoch(1)
    ds[1]
    assert seen[0] == seen[1] != seen[2]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(DatasetError, match="splits"):
        ShapesDataset("test")
    with pytest.raises(DatasetError, match="num_images"):
        ShapesDataset("train", 0)
    with pytest.raises(IndexError):
        ShapesDataset("train", 2, size=64)[2]
