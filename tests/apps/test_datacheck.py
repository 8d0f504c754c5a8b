"""deeplab data check: every planted fault found and named, classes counted, non-zero exit."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from PIL import Image

from deeplab.apps.cli import main
from deeplab.palette import voc_palette


def _folder(root, faults: bool):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    palette = voc_palette(21)
    for k in range(4):
        labels = np.zeros((20, 30), np.uint8)
        labels[5:15, 5 + k : 15 + k] = 15 if k % 2 else 3  # person or bird
        Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8)).save(root / "images" / f"{k}.png")
        Image.fromarray(np.array([[palette[v] for v in row] for row in labels], np.uint8)).save(
            root / "masks" / f"{k}.png"
        )
    if faults:
        (root / "images" / "broken.png").write_bytes(b"not a png")  # unreadable image
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "masks" / "broken.png")
        Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(root / "images" / "small.png")  # sizes differ
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "masks" / "small.png")
        Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / "odd.png")  # unknown colour
        Image.fromarray(np.full((20, 30, 3), 7, np.uint8)).save(root / "masks" / "odd.png")


def _check_args(tmp_path) -> list[str]:
    return [
        "data",
        "check",
        "--dataset",
        "folder",
        "--root",
        str(tmp_path / "data"),
        "--palette",
        "voc",
        "-o",
        str(tmp_path / "out"),
    ]


def _check_args(tmp_path) -> list[str]:
    """deeplab data check on tmp_path/data as VOC-coloured masks, pictures into tmp_path/out."""
    folder, out = str(tmp_path / "data"), str(tmp_path / "out")
    return ["data", "check", "--dataset", "folder", "--root", folder, "--palette", "voc", "-o", out]


def test_a_clean_folder_passes_and_its_classes_are_counted(tmp_path):
    _folder(tmp_path / "data", faults=False)
    args = _check_args(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 of 4 samples ready" in result.output and "suggested: loss.class_weights=[" in result.output
    bird = next(line for line in result.output.splitlines() if line.startswith("bird "))
    assert int(bird.split()[1]) == 200  # two masks with a 10 x 10 bird
    assert (tmp_path / "out" / "class_frequencies.png").is_file()


def test_every_planted_fault_is_listed(tmp_path):
    _folder(tmp_path / "data", faults=True)
    args = _check_args(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "4 of 7 samples ready; 3 with problems:" in result.output
    listed = result.output.split("3 with problems:")[1].splitlines()[1:4]
    for name, problem in (("broken.png", "not an image"), ("small.png", "30x20"), ("odd.png", "colours")):
        assert any(name in line and problem in line for line in listed), (name, listed)
    (tmp_path / "data" / "masks" / "3.png").unlink()  # an image without its mask: the layout fails at once
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "no mask for image" in result.output
