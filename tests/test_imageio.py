import numpy as np
import pytest
from PIL import Image

from deeplab.imageio import ImageReadError, list_images, read_image, read_mask, write_label_png


def _save(tmp_path, name, img, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "RGB"])
def test_read_image_any_mode_gives_rgb_uint8(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8))
    img = (
        rgb.convert(mode) if mode != "I;16" else Image.fromarray((np.arange(63).reshape(7, 9) * 1000).astype(np.uint16))
    )
    path = _save(tmp_path, "x.tif" if mode in ("CMYK", "I;16") else "x.png", img)
    arr = read_image(path)
    assert arr.shape == (7, 9, 3) and arr.dtype == np.uint8
    if mode == "I;16":  # 16-bit is scaled to 0..255, not clipped
        assert arr[..., 0].max() == round(62000 / 65535 * 255)


def test_read_image_applies_exif_orientation(tmp_path):
    img = Image.new("RGB", (6, 4), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = _save(tmp_path, "r.jpg", img, exif=exif)
    assert read_image(path).shape == (6, 4, 3)


def test_corrupt_and_missing_files_name_the_path(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png")


def test_label_png_round_trip_keeps_indices(tmp_path):
    labels = np.array([[0, 1, 2], [20, 255, 3]], dtype=np.uint8)
    path = tmp_path / "l.png"
    write_label_png(path, labels, [(0, 0, 0), (128, 0, 0), (0, 128, 0)])
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(read_mask(path), labels)


def test_read_mask_rejects_colour_masks(tmp_path):
    path = _save(tmp_path, "m.png", Image.new("RGB", (3, 3)))
    with pytest.raises(ImageReadError, match="m.png: a label map must be"):
        read_mask(path)


def test_list_images_expands_folders_and_globs(tmp_path):
    for name in ("a.png", "b.jpg", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images([tmp_path])] == ["a.png", "b.jpg"]
    assert [p.name for p in list_images([str(tmp_path / "*.jpg")])] == ["b.jpg"]
    with pytest.raises(ImageReadError, match="no such file"):
        list_images([str(tmp_path / "*.gif")])
