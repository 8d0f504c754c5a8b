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


def _rotated_photo(path, pixels):
    """Save `pixels` (stored grid) as a JPEG whose EXIF says: rotate 90 degrees on display."""
    from PIL import Image

    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, exif=exif, quality=100)


@pytest.mark.parametrize("height, width", [(12, 16), (16, 16)])
def test_exif_rotated_photo_and_its_mask_stay_aligned(tmp_path, height, width):
    """A mask drawn on the photo's stored pixels gets the photo's EXIF rotation too (square or not)."""
    (tmp_path / "classes.txt").write_text("background 0 0 0\nobject 1 1 1\n")
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 4] = 255  # a bright corner block, marked in the mask
    mask = np.zeros((height, width), np.uint8)
    mask[: height // 2, : width // 4] = 1
    _rotated_photo(tmp_path / "images" / "p.jpg", pixels)
    write(tmp_path / "masks" / "p.png", mask)
    image, labels_ = build_dataset("folder", tmp_path, None)[0]
    assert image.shape[:2] == labels_.shape == (width, height)  # upright: rotated by 90 degrees
    bright = image.mean(2) > 128
    assert (bright == (labels_ == 1)).mean() > 0.97  # the block and its label coincide


def test_mask_drawn_on_the_upright_photo_is_kept(tmp_path):
    (tmp_path / "classes.txt").write_text("background 0 0 0\nobject 1 1 1\n")
    pixels = np.zeros((12, 16, 3), np.uint8)
    _rotated_photo(tmp_path / "images" / "p.jpg", pixels)
    upright = labels([0, 1], h=16, w=12)  # the displayed photo is 12 wide, 16 high
    write(tmp_path / "masks" / "p.png", upright)
    assert np.array_equal(build_dataset("folder", tmp_path, None)[0][1], upright)


def test_scan_decodes_images_fully(tmp_path):
    """A truncated JPEG passes a header check; the scan before training must catch it, naming it."""
    (tmp_path / "classes.txt").write_text("background 0 0 0\nobject 1 1 1\n")
    write(tmp_path / "images" / "a.jpg", image(64, 64))
    write(tmp_path / "masks" / "a.png", labels([0, 1], 64, 64))
    data = (tmp_path / "images" / "a.jpg").read_bytes()
    (tmp_path / "images" / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"1 of 1 samples are bad; first: .*a\.jpg: not a readable image"):
        scan_masks(build_dataset("folder", tmp_path, None))


def test_named_palettes_need_no_classes_file(tmp_path):
    """Masks in PASCAL VOC or Cityscapes colours decode to the same indices as an index PNG."""
    import numpy as np
    import pytest
    from PIL import Image

    from deeplab.data import DatasetError
    from deeplab.data.classes import named_palettes
    from deeplab.data.folder import FolderDataset

    for name, (classes, colours, void) in named_palettes().items():
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        labels = np.array([[0, 1, 2], [3, 255, 1], [len(classes) - 1, 5, 0]], np.uint8)
        rgb = np.array([[colours[v] if v != 255 else void for v in row] for row in labels], np.uint8)
        Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(root / "images" / "a.png")
        Image.fromarray(rgb).save(root / "masks" / "a.png")
        data = FolderDataset(root, palette=name)
        assert data.classes == classes and np.array_equal(data[0][1], labels)
    with pytest.raises(DatasetError, match="unknown palette 'ade'; named palettes: voc, cityscapes, ade20k"):
        FolderDataset(tmp_path / "voc", palette="ade")


def test_a_colour_two_classes_share(tmp_path):
    """ADE20K's road and skyscraper share (140, 140, 140): ignored in its colour masks; in a classes
    file a shared colour is an error naming both classes."""
    import numpy as np
    from PIL import Image

    from deeplab.data import DatasetError
    from deeplab.data.folder import FolderDataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((1, 3, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    mask = np.array([[(140, 140, 140), (120, 120, 120), (0, 0, 0)]], np.uint8)
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    ade = FolderDataset(tmp_path, palette="ade20k")
    assert ade.classes[6] == "road" and ade.classes[48] == "skyscraper" and len(ade.classes) == 150
    assert ade[0][1].tolist() == [[255, 0, 255]]  # shared colour and "other" ignored, wall is 0
    (tmp_path / "classes.txt").write_text("wall 120 120 120\nroad 140 140 140\nskyscraper 140 140 140\n")
    with pytest.raises(DatasetError, match="classes 'road' and 'skyscraper' share the colour"):
        FolderDataset(tmp_path)
