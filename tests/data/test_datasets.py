import numpy as np
import pytest
from scipy.io import savemat

from deeplab.data import DatasetError, MaskValueError, build_dataset, scan_masks
from fake_trees import image, labels, write


def _voc(tmp_path, splits, masks=None):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for split, names in splits.items():
        lists = voc / "ImageSets" / "Segmentation"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for n in names:
            write(voc / "JPEGImages" / f"{n}.jpg", image())
            write(voc / "SegmentationClass" / f"{n}.png", (masks or {}).get(n, labels([0, 15, 255])))
    return voc


def test_voc_reads_palette_masks_as_class_indices(tmp_path):
    _voc(tmp_path, {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]})
    ds = build_dataset("voc", tmp_path, "train")
    assert len(ds) == 2 and ds.names == ["2007_000032", "2007_000039"]
    assert ds.classes[0] == "background" and len(ds.classes) == len(ds.palette) == 21
    img, mask = ds[1]
    assert img.shape == (12, 16, 3) and img.dtype == np.uint8
    assert np.array_equal(mask, labels([0, 15, 255]))
    counts = scan_masks(ds)
    assert counts[0] == 2 * 12 * 6 and counts[15] == 2 * 12 * 5
    assert len(build_dataset("voc", tmp_path / "VOCdevkit", "val")) == 1  # any level of the tree


def test_bad_mask_values_name_the_file_and_values(tmp_path):
    _voc(tmp_path, {"train": ["a", "b"]}, masks={"b": labels([0, 21, 40])})
    ds = build_dataset("voc", tmp_path, "train")
    ds[0]
    with pytest.raises(MaskValueError, match=r"b\.png: mask values \[21, 40\].*0\.\.20, 255"):
        ds[1]
    with pytest.raises(MaskValueError, match=r"1 of 2 samples are bad; first: .*b\.png"):
        scan_masks(ds)


def test_size_mismatch_missing_files_and_empty_splits(tmp_path):
    voc = _voc(tmp_path, {"train": ["a"], "val": []}, masks={"a": labels([1], 10, 16)})
    ds = build_dataset("voc", tmp_path, "train")
    with pytest.raises(DatasetError, match=r"a\.jpg is 16x12 but its mask .*a\.png is 16x10"):
        ds[0]
    with pytest.raises(DatasetError, match="a.jpg is 16x12"):
        scan_masks(ds)
    with pytest.raises(DatasetError, match="lists no images"):
        build_dataset("voc", tmp_path, "val")
    with pytest.raises(DatasetError, match=r"test\.txt: no such split list \(splits there: train, val\)"):
        build_dataset("voc", tmp_path, "test")
    (voc / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(DatasetError, match=r"JPEGImages/a\.jpg: no such image file"):
        build_dataset("voc", tmp_path, "train")


def test_voc_aug_builds_train_aug_from_voc_and_sbd(tmp_path):
    voc = _voc(tmp_path, {"train": ["a", "b"], "val": ["c"]})
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("b\nd\nc\n")
    (sbd / "val.txt").write_text("e\n")
    for n, value in (("b", 3), ("c", 4), ("d", 5), ("e", 6)):
        write(voc / "JPEGImages" / f"{n}.jpg", image())
        savemat(sbd / "cls" / f"{n}.mat", {"GTcls": {"Segmentation": labels([0, value]), "CategoriesPresent": value}})
    ds = build_dataset("voc_aug", tmp_path, "train_aug")
    assert ds.names == ["a", "b", "d", "e"]  # VOC train + SBD train + SBD val - VOC val
    assert np.array_equal(ds[1][1], labels([0, 15, 255]))  # VOC's own mask where VOC has one
    assert np.array_equal(ds[2][1], labels([0, 5]))  # SBD .mat otherwise
    assert scan_masks(ds)[6] == 12 * 8
    assert build_dataset("voc_aug", tmp_path, "val").names == ["c"]
    savemat(sbd / "cls" / "e.mat", {"other": 1})
    with pytest.raises(DatasetError, match=r"e\.mat: not an SBD class map"):
        ds[3]


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    city = tmp_path / "cityscapes"
    stem = "aachen_000000_000019"
    write(city / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png", image())
    write(city / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png", labels([0, 7, 26, 33, 24, 1]))
    ds = build_dataset("cityscapes", tmp_path, "val")
    assert ds.names == [stem] and len(ds.classes) == 19 and ds.classes[13] == "car"
    assert np.array_equal(ds[0][1], labels([255, 0, 13, 18, 11, 255]))
    write(city / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png", labels([7, 40]))
    with pytest.raises(MaskValueError, match=r"labelIds\.png: mask values \[40\]"):
        ds[0]
    with pytest.raises(DatasetError, match="no \\*_leftImg8bit.png images in split 'train'"):
        build_dataset("cityscapes", city, "train")


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    ade = tmp_path / "ADEChallengeData2016"
    write(ade / "images" / "training" / "ADE_train_00000001.jpg", image())
    write(ade / "annotations" / "training" / "ADE_train_00000001.png", labels([0, 1, 150]))
    ds = build_dataset("ade20k", tmp_path, "train")
    assert len(ds.classes) == len(ds.palette) == 150 and ds.classes[0] == "wall"
    assert np.array_equal(ds[0][1], labels([255, 0, 149]))
    write(ade / "annotations" / "training" / "ADE_train_00000001.png", labels([1, 151]))
    with pytest.raises(MaskValueError, match=r"\[151\]"):
        ds[0]


def test_build_dataset_names_the_valid_choices():
    with pytest.raises(
        ValueError, match="unknown dataset 'vco'; valid names: ade20k, cityscapes, folder, shapes, voc, voc_aug"
    ):
        build_dataset("vco", ".", "train")
    with pytest.raises(DatasetError, match="needs a root folder"):
        build_dataset("voc", None, "train")
    with pytest.raises(DatasetError, match="nowhere: no such folder"):
        build_dataset("voc", "nowhere", "train")
    assert len(build_dataset("shapes", None, "val", num_images=3, size=64)) == 3


def test_options_of_another_data_set_are_named(tmp_path):
    """The shapes recipe's data.options on a folder data set: one line naming what does not apply."""
    import pytest

    from deeplab.data import DatasetError, build_dataset

    with pytest.raises(
        DatasetError,
        match=r"option\(s\) num_images, size do not apply to dataset 'folder'; it takes: seed, classes_file",
    ):
        build_dataset("folder", tmp_path, "train", num_images=10, size=64)
    with pytest.raises(DatasetError, match=r"needs a root folder \(--root DIR"):
        build_dataset("voc", None, "val")
    assert len(build_dataset("shapes", None, "val", num_images=3, size=64)) == 3
