"""`deeplab crf IMAGE PROBS.npy -o labels.png`."""

from __future__ import annotations

import numba
import numpy as np
from click.testing import CliRunner
from PIL import Image

from crf_cases import network_probs, photo_like
from deeplab.apps.cli import main
from deeplab.crf import DenseCRF
from deeplab.imageio import read_mask


def write_case(tmp_path, h=24, w=32, c=4):
    image, gt = photo_like(h, w, c, seed=5, shapes=3)
    probs = network_probs(gt, c, seed=6, stride=4)
    Image.fromarray(image).save(tmp_path / "image.png")
    np.save(tmp_path / "probs.npy", probs)
    return image, probs


def test_writes_the_refined_labels(tmp_path):
    image, probs = write_case(tmp_path)
    args = [
        str(tmp_path / "image.png"),
        str(tmp_path / "probs.npy"),
        "-o",
        str(tmp_path / "out.png"),
        "--theta-alpha",
        "12",
        "--iterations",
        "5",
        "--threads",
        "1",
    ]
    before = numba.get_num_threads()
    try:
        result = CliRunner().invoke(main, ["crf", *args])
    finally:
        numba.set_num_threads(before)  # --threads set it for this (the test's) thread
    assert result.exit_code == 0, result.output
    expected = DenseCRF(theta_alpha=12, iterations=5)(image, probs).argmax(0)
    np.testing.assert_array_equal(read_mask(tmp_path / "out.png"), expected)
    assert Image.open(tmp_path / "out.png").getpalette()[3:6] == [128, 0, 0]  # VOC colours


def test_logits_flag(tmp_path):
    image, probs = write_case(tmp_path)
    np.save(tmp_path / "logits.npy", np.log(probs) - 2)
    base = [str(tmp_path / "image.png"), str(tmp_path / "logits.npy"), "-o", str(tmp_path / "out.png")]
    refused = CliRunner().invoke(main, ["crf", *base])
    assert refused.exit_code != 0 and "not probabilities" in refused.output and "--logits" in refused.output
    assert CliRunner().invoke(main, ["crf", *base, "--logits"]).exit_code == 0


def test_bad_files(tmp_path):
    write_case(tmp_path)
    np.save(tmp_path / "small.npy", np.full((4, 10, 10), 0.25, np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    out = ["-o", str(tmp_path / "out.png")]
    image = str(tmp_path / "image.png")
    result = CliRunner().invoke(main, ["crf", image, str(tmp_path / "small.npy"), *out])
    assert result.exit_code != 0 and "small.npy: probabilities are 10x10 but" in result.output
    result = CliRunner().invoke(main, ["crf", image, str(tmp_path / "junk.npy"), *out])
    assert result.exit_code != 0 and "junk.npy: not a .npy array file" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["crf", image, str(tmp_path / "probs.npy"), *out, "--theta-beta", "0"])
    assert result.exit_code == 2 and "--theta-beta" in result.output and "x>0" in result.output  # a usage error
