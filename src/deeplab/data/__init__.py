"""Data: readers for VOC / SBD / Cityscapes / ADE20K / image folders, the generated `shapes` set,
joint transforms, and mask checks."""

from deeplab.data.base import DatasetError, MaskValueError, SegmentationDataset, class_frequencies, scan_masks
from deeplab.data.datasets import DATASETS, build_dataset
from deeplab.data.shapes import ShapesDataset
from deeplab.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "DATASETS",
    "DatasetError",
    "EvalTransform",
    "MaskValueError",
    "SegmentationDataset",
    "ShapesDataset",
    "TrainTransform",
    "build_dataset",
    "class_frequencies",
    "scan_masks",
]
