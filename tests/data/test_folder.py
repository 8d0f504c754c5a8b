import numpy as np
import pytest

from deeplab.data import DatasetError, MaskValueError, build_dataset, scan_masks
from deeplab.data.shapes import ShapesDataset, write_dataset
from fake_trees import image, labels, write

COLOURS = {"background": (0, 0, 0), "cat": (200, 0, 0), "traffic light": (0, 200, 0)}


def _tree(tmp_path, mask_rgb):
    lines = [f"{n} {r} {g} {b}" for n, (r, g, b) in COLOURS.items()] + ["void 255 255 255"]
    (tmp_path / "classes.txt").write_text("# name r g b\n" + "\n".join(lines) + "\n")
    write(tmp_path / "images" / "one.jpg", image())
    write(tmp_path / "images" / "two.png", image())
    write(tmp_path / "masks" / "one.png", mask_rgb)
    write(tmp_path / "masks" / "two.png", labels([0, 2, 255]))


def test_colour_and_index_masks_by_stem(tmp_path):
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, 4:8] = COLOURS["cat"]
    rgb[:, 8:] = (255, 255, 255)
    _tree(tmp_path, rgb)
    ds = build_dataset("folder", tmp_path, "all")
    assert ds.classes == ["background", "cat", "traffic light"] and ds.names == ["one", "two"]
    assert ds.palette[2] == (0, 200, 0)
    mask = ds[0][1]
    assert (mask[:, :4] == 0).all() and (mask[:, 4:8] == 1).all() and (mask[:, 8:] == 255).all()
    assert np.array_equal(ds[1][1], labels([0, 2, 255]))
    (tmp_path / "val.txt").write_text("two\n")
    assert build_dataset("folder", tmp_path, "val").names == ["two"]


def test_unknown_colours_bad_indices_and_missing_masks(tmp_path):
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    _tree(tmp_path, rgb)
    ds = build_dataset("folder", tmp_path, None)
    with pytest.raises(MaskValueError, match=r"one\.png: colours \[\(1, 2, 3\)\] are not class colours"):
        ds[0]
    write(tmp_path / "masks" / "two.png", labels([0, 3]))
    with pytest.raises(MaskValueError, match=r"2 of 2 samples are bad"):
        scan_masks(ds)
    write(tmp_path / "images" / "three.jpg", image())
    with pytest.raises(DatasetError, match=r"masks/three\.png: no mask for image .*three\.jpg"):
        build_dataset("folder", tmp_path, None)
    with pytest.raises(DatasetError, match=r"no split 'train'"):
        build_dataset("folder", tmp_path, "train")


def test_yaml_classes_without_colours_get_a_palette(tmp_path):
    (tmp_path / "classes.yaml").write_text("classes: [sky, {name: road, color: [1, 2, 3]}]\n")
    write(tmp_path / "images" / "a.png", image())
    write(tmp_path / "masks" / "a.png", labels([0, 1]))
    ds = build_dataset("folder", tmp_path, None)
    assert ds.classes == ["sky", "road"] and ds.palette[1] == (1, 2, 3) and len(ds.palette[0]) == 3
    (tmp_path / "classes.yaml").unlink()
    with pytest.raises(DatasetError, match="no classes file"):
        build_dataset("folder", tmp_path, None)


def test_shapes_written_to_disk_read_back_identically(tmp_path):
    write_dataset(tmp_path, {"train": 2, "val": 2}, size=64, seed=5)
    ds = build_dataset("folder", tmp_path, "val")
    ref = ShapesDataset("val", 2, size=64, seed=5)
    assert ds.classes == ref.classes and ds.palette == ref.palette and ds.names == ref.names
    for i in range(2):
        assert all(np.array_equal(a, b) for a, b in zip(ds[i], ref[i]))
